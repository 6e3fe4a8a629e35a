# packrat 面向运维人员的文本，简体中文。键与 en.ftl 一一对应。

## 任务消息
job-completed = 备份完成
job-completed-synced = 备份完成（已同步）
job-completed-not-synced = 备份完成（同步失败）
job-failed = 备份失败：{ $reason }
job-cancelled = 已由 { $who } 取消
job-failed-short = 备份失败
job-interrupted = 已中断
job-interrupted-detail = 运行此任务的 packrat 进程在任务结束前停止（崩溃、被终止或断电）；下次运行将重新开始
job-interrupted-detail-pid = 运行此任务的 packrat 进程（pid { $pid }）在任务结束前停止（崩溃、被终止或断电）；下次运行将重新开始
job-recovered = 备份完成（已恢复：进程在备份包就位后停止）
job-recovered-copies-missing = 进程在复制到存储 { $sinks } 之前停止

## 任务阶段（运行中的任务消息，以及命令行的进度行）
stage-checking-sinks = 正在检查存储
stage-source = 正在备份数据源 { $source }（{ $index }/{ $count }）
stage-sealing = 正在封装备份包
stage-storing = 正在将备份包存入存储 { $sink }
stage-replicating = 正在同步到存储 { $sink }

## 告警（所有渠道：日志、邮件主题与正文、钉钉、企业微信、Slack、webhook）
alert-subject = packrat@{ $host }：{ $what }
alert-subject-firing = [{ $severity }] { $key }
alert-subject-resolved = [已恢复] { $key }
alert-subject-test = [测试] packrat 告警渠道测试
alert-severity-critical = 严重
alert-severity-warning = 警告
alert-severity-info = 提示
alert-still-firing = （自 { $since } 起持续告警，已触发 { $count } 次）
alert-resolved = 已恢复：{ $message }
alert-test-message = 来自 packrat 的测试消息，渠道 `{ $channel }`：告警可以送达
alert-last-error = ；最近一次错误（任务 { $job }）：{ $error }
alert-plan-failures = 计划 `{ $plan }` 已连续失败 { $failures } 次{ $why }。请运行 `packrat doctor` 和 `packrat jobs --plan { $plan }`
alert-plan-overdue = 计划 `{ $plan }` 最近一次成功备份是 { $at }（任务 { $job }），已超过 { $max }
alert-plan-never = 自 packratd 启动以来的 { $max } 内，计划 `{ $plan }` 没有成功的备份
alert-run-doctor = { $what }。请运行 `packrat doctor`
alert-job-stuck = 计划 `{ $plan }` 的任务 { $job } 自 { $since } 起一直在运行（超过 { $max }）；当前：{ $stage }（{ $progress }%）。请检查数据源和存储，或停止 packratd 以中断它
alert-sink-unusable = 存储 `{ $sink }`（{ $location }）不可用：{ $error }
alert-sink-space = 存储 `{ $sink }`（{ $location }）剩余 { $free } MiB，低于 { $min } MiB 的阈值；请释放空间或收紧保留策略

## doctor 诊断
doctor-tag-ok = 正常
doctor-tag-warn = 警告
doctor-tag-fail = 失败
doctor-line = { $tag }  { $name }：{ $detail }
doctor-line-fix = { $tag }  { $name }：{ $detail } -> 处理：{ $fix }
doctor-state-store = 状态库
doctor-fix-make-writable = 让 packrat 用户可写 { $path }
doctor-interrupted-unchecked = 无法检查被中断的任务：{ $error }
doctor-fix-see-jobs = 运行 `packrat jobs` 查看任务
doctor-encryption = 加密（{ $plan }）
doctor-fix-section = 修正配置 [{ $key }]
doctor-fix-identity = 修正 [{ $key }] 中的 identity_file/identity_env
doctor-enc-no-identity = 备份包加密给 { $to }；本机未配置私钥（identity）
doctor-fix-enc-no-identity = 请在别处妥善保管私钥；verify --deep 和恢复需要 --identity FILE（或在 [{ $key }] 中设置 identity_file）
doctor-enc-wrong-identity = 备份包加密给 { $to }，但配置的私钥属于 { $identity }
doctor-fix-enc-wrong-identity = 将 [{ $key }] 中的 identity_file 设为某个接收者的私钥
doctor-enc-ok = 备份包加密给 { $to }；配置的私钥可以打开
doctor-bucket = 存储桶 { $sink }
doctor-bucket-ok = { $location } 可访问并接受凭据
doctor-fix-bucket-denied = 检查 sinks.{ $sink }.access_key_id_*/secret_access_key_*，并确认该密钥可读写存储桶 { $bucket }
doctor-fix-bucket-missing = 在对象存储上创建存储桶 { $bucket }，或修正 sinks.{ $sink }.bucket
doctor-fix-bucket-config = 修正 sinks.{ $sink }（endpoint、region、path_style、凭据）
doctor-fix-bucket-unreachable = 检查本机能否访问 { $endpoint }，以及对象存储是否在运行
doctor-fix-config = 修正配置
doctor-sink = 存储 { $sink }
doctor-present-writable = { $path } 存在且可写
doctor-fix-create-writable = 创建 { $path }，或让 packrat 用户可写
doctor-staging-leftovers = 无残留的暂存目录（{ $sink }）
doctor-none = 无
doctor-staging-leftovers-found = { $count } 个被中断的任务或清理留下的残留：{ $paths }
doctor-fix-staging-leftovers = 使用此存储的计划下次运行或清理时会删除它们；也可以手动删除
doctor-fix-make-readable = 让 packrat 用户可读 { $path }
doctor-share-mounted = 共享已挂载（{ $sink }）
doctor-replica-writable = 副本目标可写（{ $sink }）
doctor-tmp-leftovers = 无残留的 _tmp 目录（{ $sink }）
doctor-share-on = { $path } 位于 { $fs } { $source }（挂载于 { $mount }）
doctor-fix-share-path = 将 sinks.{ $sink }.path 设为已挂载共享上的目录
doctor-fix-share-mkdir = 在共享上创建它（mkdir -p { $path }），或修正 sinks.{ $sink }.path
doctor-fix-share-mount = 将共享挂载到其挂载点（mount -t cifs //SERVER/SHARE MOUNTPOINT -o ...），或修正 sinks.{ $sink }.path
doctor-share-not-checked = 未检查：共享检查未通过
doctor-fix-share-first = 请先修复共享
doctor-fix-share-writable = 在共享上创建 { $path }，并给 packrat 用户写权限（挂载选项 uid=、file_mode=）
doctor-tmp-leftovers-found = { $count } 个被中断的复制留下的残留：{ $paths }
doctor-fix-tmp-leftovers = 使用此存储的计划下次运行时会删除它们；也可以手动删除
doctor-fix-check-share = 检查共享
doctor-latest-job = 最近的任务（{ $plan }）
doctor-fix-check-state = 检查状态库
doctor-no-job = 还没有任务
doctor-fix-run = 运行 `packrat run { $plan }`
doctor-fix-rerun = 查看 `packrat job { $job }`，排除原因后运行 `packrat run { $plan }`
doctor-job-message = 任务 { $job } { $message }
doctor-job-not-synced = 任务 { $job } 已完成但未同步（同步状态 { $replication }）：{ $detail }
doctor-job-active = 任务 { $job } { $status }（{ $progress }%）
doctor-job-ended = 任务 { $job } { $status }：{ $detail }

## 命令行输出（run、jobs、job、list、verify、status）
status-queued = 排队中
status-running = 运行中
status-completed = 已完成
status-failed = 失败
status-interrupted = 已中断
status-cancelled = 已取消
run-job = 任务 { $job }：{ $status }，{ $message }
run-pack = 备份包 { $pack } 位于 { $location }
run-pack-size = {"  "}{ $artifacts } 个文件，{ $size }，耗时 { $duration }
run-replica = { $sink } 上的副本：{ $location }
warning-line = 警告：{ $warning }
error-line = 错误：{ $error }
jobs-none = 还没有任务
col-id = 编号
col-plan = 计划
col-kind = 类型
col-status = 状态
col-started = 开始时间
col-time = 耗时
col-size = 大小
col-message = 消息
col-sink = 存储
col-pack = 备份包
col-location = 位置
job-head = 任务 { $job }（{ $plan } { $kind }，{ $trigger }）
job-status = {"  "}状态：      { $status }（{ $progress }%）
job-message = {"  "}消息：      { $message }
job-detail = {"  "}详情：      { $detail }
job-size = {"  "}大小：      { $size }，{ $artifacts } 个文件，{ $records } 条记录
packs-none = 没有备份包
verify-quick = 快速
verify-deep = 深度
verify-ok = 正常 { $pack }（{ $level }，{ $artifacts } 个文件）位于 { $location }
verify-fail = 失败 { $pack }（{ $level }）位于 { $location }
status-totals = 备份：共 { $total } 次，成功 { $succeeded } 次，失败 { $failed } 次（成功率 { $rate }%），已存储 { $size } MB，运行中 { $active } 个
status-last-job = 任务 { $job } { $status } { $at }
status-never-ran = 从未运行
status-enabled = 已启用
status-disabled = 已停用
status-plan = 最近：{ $last }；最近成功：{ $success }；连续失败：{ $failures }
status-sink = 存储
status-sink-last = 任务 { $job } { $at }
status-sink-never = 从未
status-sink-line = 已接收 { $packs } 个备份包，{ $size } MB；最近：{ $last }

## 错误（顶层前缀与常见的用法错误）
error-stdout = 错误：无法写入标准输出：{ $error }
error-plan-no-packs = 计划 `{ $plan }` 还没有备份包；请先运行 `packrat run { $plan }`
error-pack-not-found = 找不到备份包 `{ $pack }`（请给出备份包目录、PLAN/PACK_ID、备份包编号或 --latest PLAN；`packrat list` 列出所有备份包）
error-no-config = 未指定配置文件；请使用 --config FILE 或设置 { $env }（可用 `packrat demo` 快速上手）
error-unknown-plan = 配置中没有计划 `{ $plan }`（已定义：{ $defined }）
error-locked = { $what } 已被另一个 packrat 进程锁定；请等待它结束或停止它
error-locked-pid = { $what } 已被另一个 packrat 进程锁定（pid { $pid }）；请等待它结束或停止它
alert-test-written = 测试告警已写入告警日志 { $path }

## doctor 诊断：守护进程、定时、最近成功、磁盘空间、数据源、保留策略
doctor-daemon = 守护进程
doctor-daemon-up = packratd 正在运行（pid { $pid }，已运行 { $up } 秒）
doctor-daemon-down = packratd 未运行，定时任务不会触发
doctor-fix-daemon-start = 启动它：`systemctl start packratd`（见 docs/daemon.md），或运行 `packratd --config FILE`
doctor-daemon-down-ok = packratd 未运行（没有计划设置了定时）
doctor-fix-daemon-restart = 重启 packratd（`systemctl restart packratd`），并查看 <state_dir>/logs 中的日志
doctor-schedule = 定时（{ $plan }）
doctor-no-schedule = 未设置定时：仅手动或通过 API 运行
doctor-fix-cron = 修正 cron 表达式
doctor-schedule-disabled = { $schedule }，但计划已停用
doctor-fix-enable = 在 [plans.{ $plan }] 中设置 `enabled = true` 并重启 packratd
doctor-schedule-next = { $schedule }；下次运行 { $next }
doctor-never = 从不
doctor-fired = 已触发（{ $plan }）
doctor-slot-fired = 最近的到期时段已触发（{ $plan }）
doctor-not-due = 尚未到期
doctor-slot-ok = { $at } 的 { $kind } 时段已触发
doctor-slot-due = { $at } 的 { $kind } 时段刚刚到期
doctor-last-fired = 最近触发的时段 { $at }
doctor-never-fired = 从未触发
doctor-why-daemon-down = packratd 未运行
doctor-fix-catch-up = 启动 packratd；它会补跑一次（catch_up = { $catch_up }）
doctor-why-new-plan = 新计划在 packratd 启动后等待它的第一个时段
doctor-fix-wait-or-run = 等待下一个时段，或立即运行：`packrat run { $plan }`
doctor-why-skipped = catch_up = { $catch_up } 跳过了它
doctor-fix-run-now = 立即运行：`packrat run { $plan }`
doctor-slot-missed = { $at } 的 { $kind } 时段未触发（{ $last }）：{ $why }
doctor-last-success = 最近成功（{ $plan }）
doctor-success-old = 任务 { $job } 于 { $at }，已超过 { $hours } 小时
doctor-fix-see-plan-jobs = 用 `packrat jobs --plan { $plan }` 查看之后的运行为何失败
doctor-success-at = 任务 { $job } 于 { $at }
doctor-no-success = 还没有成功的备份
doctor-job = 任务 { $job }
doctor-disk-space = 磁盘空间（{ $sink }）
doctor-space-low = { $location } 剩余 { $free } MiB，低于 { $min } MiB
doctor-fix-space = 释放空间，或保留更少的备份包（[plans.X] retention，然后 `packrat prune`）
doctor-space-ok = { $location } 剩余 { $free } MiB
doctor-space-unknown = 此存储无法得知
doctor-fix-sink-reachable = 检查存储是否可访问
doctor-source = 数据源可访问（{ $source }）
doctor-source-ok = { $kind } 数据源可以读取
doctor-fix-source = 检查 sources.{ $source } 的服务器或文件是否在线且可读
doctor-retention = 保留策略（{ $plan }）
doctor-future = 时间在未来的备份包（{ $sink } 上的 { $plan }）
doctor-future-found = { $count } 个备份包的开始时间晚于现在：{ $packs }
doctor-fix-future = 检查写入它们的主机的时钟（NTP）；保留策略会保留它们且不把它们当作最新的备份包。请校验它们（`packrat verify`），损坏的请手动删除
doctor-retention-none = 没有规则：保留所有备份包

## doctor 诊断：恢复残留
doctor-restore-leftovers-in = 恢复残留（{ $dir }）
doctor-cannot-look = 无法查看 { $dir }：{ $error }
doctor-fix-permissions = 检查该目录的权限
doctor-restore-stale = { $file }（{ $size }）是一次被中断的、恢复到 { $target } 的操作留下的
doctor-fix-restore-stale = 下次恢复到 { $target } 时会删除它；也可以手动删除：rm '{ $file }'
doctor-restore-unknown = { $file }（{ $size }）可能是一次被中断的、恢复到 { $target } 的操作留下的（无法判断是否仍有恢复在运行：{ $why }）
doctor-fix-restore-unknown = 确认没有恢复在运行后删除它：rm '{ $file }'
doctor-restore-leftovers = 恢复残留
doctor-restore-none = { $dirs } 个目录中均无残留{ $in_use }
doctor-restore-in-use = （正在运行的恢复有 { $count } 个临时文件）

## 清理、恢复、配置检查
prune-nothing = 没有需要清理的备份包
prune-head = 存储 { $sink } 上的计划 { $plan }：保留 { $kept } 个，删除 { $removed } 个
prune-head-dry-run = 存储 { $sink } 上的计划 { $plan }（演练）：保留 { $kept } 个，将删除 { $removed } 个
restore-done = 已恢复到 { $target }（{ $size }）
warning-fix = 警告：{ $warning }
    {"  "}处理：{ $fix }
config-ok = 配置正确：{ $sources } 个数据源，{ $sinks } 个存储，{ $plans } 个计划
restore-removed-leftover = 已删除被中断的恢复留下的 { $path }
