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
