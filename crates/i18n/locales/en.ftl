# packrat's operator-facing texts, English. Keys are stable; every key exists in zh-CN.ftl too
# (a test checks it). Placeables: { $name }.

## Job messages (stored in the job record, shown on the dashboard and by `packrat jobs`)
job-completed = backup completed
job-completed-synced = backup completed (synced)
job-completed-not-synced = backup completed (replication failed)
job-failed = backup failed: { $reason }
job-cancelled = cancelled by { $who }
job-failed-short = backup failed
job-interrupted = interrupted
job-interrupted-detail = the packrat process running this job stopped before it finished (crash, kill or power loss); the next run starts afresh
job-interrupted-detail-pid = the packrat process (pid { $pid }) running this job stopped before it finished (crash, kill or power loss); the next run starts afresh
job-recovered = backup completed (recovered: the process stopped after the pack was in place)
job-recovered-copies-missing = the process stopped before the copy to sink(s) { $sinks } was made

## Job stages (the job's message while it runs, and the CLI's progress line)
stage-checking-sinks = checking sinks
stage-source = backing up source { $source } ({ $index }/{ $count })
stage-sealing = sealing pack
stage-storing = storing pack in sink { $sink }
stage-replicating = replicating to sink { $sink }

## Alerts (every channel: log, e-mail subject and body, DingTalk, WeChat Work, Slack, webhook)
alert-subject = packrat@{ $host }: { $what }
alert-subject-firing = [{ $severity }] { $key }
alert-subject-resolved = [RESOLVED] { $key }
alert-subject-test = [TEST] packrat alert channel test
alert-severity-critical = CRITICAL
alert-severity-warning = WARNING
alert-severity-info = INFO
alert-still-firing = (still firing since { $since }, raised { $count } times)
alert-resolved = resolved: { $message }
alert-test-message = test message from packrat to channel `{ $channel }`: alerts reach you
alert-last-error = ; last error (job { $job }): { $error }
alert-plan-failures = plan `{ $plan }` failed { $failures } times in a row{ $why }. Run `packrat doctor` and `packrat jobs --plan { $plan }`
alert-plan-overdue = the last successful backup of plan `{ $plan }` is from { $at } (job { $job }), older than { $max }
alert-plan-never = plan `{ $plan }` has had no successful backup in the { $max } since packratd started
alert-run-doctor = { $what }. Run `packrat doctor`
alert-job-stuck = job { $job } of plan `{ $plan }` has been running since { $since } (more than { $max }); at: { $stage } ({ $progress }%). Check the source and sink, or stop packratd to interrupt it
alert-sink-unusable = sink `{ $sink }` ({ $location }) is not usable: { $error }
alert-sink-space = sink `{ $sink }` ({ $location }) has { $free } MiB free, less than the { $min } MiB threshold; free space or tighten retention

## doctor
doctor-tag-ok = {"OK  "}
doctor-tag-warn = WARN
doctor-tag-fail = FAIL
doctor-line = { $tag }  { $name }: { $detail }
doctor-line-fix = { $tag }  { $name }: { $detail } -> fix: { $fix }
doctor-state-store = state store
doctor-fix-make-writable = make { $path } writable for the packrat user
doctor-interrupted-unchecked = cannot check for interrupted jobs: { $error }
doctor-fix-see-jobs = run `packrat jobs` to see the jobs
doctor-encryption = encryption ({ $plan })
doctor-fix-section = fix [{ $key }]
doctor-fix-identity = fix identity_file/identity_env in [{ $key }]
doctor-enc-no-identity = packs are encrypted to { $to }; no identity is configured on this host
doctor-fix-enc-no-identity = keep the identity safe elsewhere; verify --deep and restores need --identity FILE (or set identity_file in [{ $key }])
doctor-enc-wrong-identity = packs are encrypted to { $to }, but the identity configured is for { $identity }
doctor-fix-enc-wrong-identity = set identity_file in [{ $key }] to the identity of one of the recipients
doctor-enc-ok = packs are encrypted to { $to }; the identity configured opens them
doctor-bucket = bucket { $sink }
doctor-bucket-ok = { $location } answers and accepts the credentials
doctor-fix-bucket-denied = check sinks.{ $sink }.access_key_id_*/secret_access_key_* and that the key may read and write bucket { $bucket }
doctor-fix-bucket-missing = create bucket { $bucket } on the store or fix sinks.{ $sink }.bucket
doctor-fix-bucket-config = fix sinks.{ $sink } (endpoint, region, path_style, credentials)
doctor-fix-bucket-unreachable = check that { $endpoint } is reachable from this host and the store is up
doctor-fix-config = fix the config
doctor-sink = sink { $sink }
doctor-present-writable = { $path } is present and writable
doctor-fix-create-writable = create { $path } or make it writable for the packrat user
doctor-staging-leftovers = no stale staging leftovers ({ $sink })
doctor-none = none
doctor-staging-leftovers-found = { $count } leftover(s) of interrupted jobs or prunes: { $paths }
doctor-fix-staging-leftovers = the next run or prune of a plan with this sink removes them; or remove them by hand
doctor-fix-make-readable = make { $path } readable for the packrat user
doctor-share-mounted = share mounted ({ $sink })
doctor-replica-writable = replica target writable ({ $sink })
doctor-tmp-leftovers = no stale _tmp leftovers ({ $sink })
doctor-share-on = { $path } is on { $fs } { $source } (mounted at { $mount })
doctor-fix-share-path = set sinks.{ $sink }.path to the directory on the mounted share
doctor-fix-share-mkdir = create it on the share (mkdir -p { $path }) or fix sinks.{ $sink }.path
doctor-fix-share-mount = mount the share at its mount point (mount -t cifs //SERVER/SHARE MOUNTPOINT -o ...), or fix sinks.{ $sink }.path
doctor-share-not-checked = not checked: the share check failed
doctor-fix-share-first = fix the share first
doctor-fix-share-writable = create { $path } on the share and give the packrat user write access (mount options uid=, file_mode=)
doctor-tmp-leftovers-found = { $count } leftover(s) of interrupted copies: { $paths }
doctor-fix-tmp-leftovers = the next run of a plan with this sink removes them; or remove them by hand
doctor-fix-check-share = check the share
doctor-latest-job = latest job ({ $plan })
doctor-fix-check-state = check the state store
doctor-no-job = no job yet
doctor-fix-run = run `packrat run { $plan }`
doctor-fix-rerun = see `packrat job { $job }`, fix the cause, then run `packrat run { $plan }`
doctor-job-message = job { $job } { $message }
doctor-job-not-synced = job { $job } completed but is not synced (replication { $replication }): { $detail }
doctor-job-active = job { $job } is { $status } ({ $progress }%)
doctor-job-ended = job { $job } { $status }: { $detail }

## CLI output (run, jobs, job, list, verify, status)
status-queued = queued
status-running = running
status-completed = completed
status-failed = failed
status-interrupted = interrupted
status-cancelled = cancelled
run-job = job { $job }: { $status } ({ $message })
run-pack = pack { $pack } at { $location }
run-pack-size = {"  "}{ $artifacts } artifact(s), { $size }, { $duration }
run-replica = replica on { $sink }: { $location }
warning-line = warning: { $warning }
error-line = error: { $error }
jobs-none = no jobs yet
col-id = ID
col-plan = PLAN
col-kind = KIND
col-status = STATUS
col-started = STARTED
col-time = TIME
col-size = SIZE
col-message = MESSAGE
col-sink = SINK
col-pack = PACK
col-location = LOCATION
job-head = job { $job } ({ $plan } { $kind }, { $trigger })
job-status = {"  "}status:      { $status } ({ $progress }%)
job-message = {"  "}message:     { $message }
job-detail = {"  "}detail:      { $detail }
job-size = {"  "}size:        { $size } in { $artifacts } artifact(s), { $records } record(s)
packs-none = no packs
verify-quick = quick
verify-deep = deep
verify-ok = OK   { $pack } ({ $level }, { $artifacts } artifact(s)) at { $location }
verify-fail = FAIL { $pack } ({ $level }) at { $location }
status-totals = backups: { $total } total, { $succeeded } succeeded, { $failed } failed ({ $rate }% success), { $size } MB stored, { $active } active
status-last-job = job { $job } { $status } { $at }
status-never-ran = never ran
status-enabled = enabled
status-disabled = disabled
status-plan = last: { $last }; last success: { $success }; failures in a row: { $failures }
status-sink = sink
status-sink-last = job { $job } { $at }
status-sink-never = never
status-sink-line = { $packs } packs, { $size } MB received; last: { $last }

## Errors (the top-level prefix and the common usage errors)
error-stdout = error: cannot write to stdout: { $error }
error-plan-no-packs = plan `{ $plan }` has no packs yet; run `packrat run { $plan }` first
error-pack-not-found = no pack `{ $pack }` found (give a pack directory, PLAN/PACK_ID, a pack id, or --latest PLAN; `packrat list` shows the packs)
error-no-config = no config file given; pass --config FILE or set { $env } (try `packrat demo` for a quick start)
error-unknown-plan = no plan `{ $plan }` in the config (defined: { $defined })
error-locked = { $what } is locked by another packrat process; wait for it to finish or stop it
error-locked-pid = { $what } is locked by another packrat process (pid { $pid }); wait for it to finish or stop it
alert-test-written = test alert written to the alerts log { $path }

## doctor: daemon, schedules, last success, disk space, sources, retention
doctor-daemon = daemon
doctor-daemon-up = packratd is running (pid { $pid }, up { $up }s)
doctor-daemon-down = packratd is not running, so no schedule fires
doctor-fix-daemon-start = start it: `systemctl start packratd` (see docs/daemon.md), or run `packratd --config FILE`
doctor-daemon-down-ok = packratd is not running (no plan has a schedule)
doctor-fix-daemon-restart = restart packratd (`systemctl restart packratd`) and check its log in <state_dir>/logs
doctor-schedule = schedule ({ $plan })
doctor-no-schedule = no schedule: runs only by hand or over the API
doctor-fix-cron = fix the cron expression
doctor-schedule-disabled = { $schedule }, but the plan is disabled
doctor-fix-enable = set `enabled = true` in [plans.{ $plan }] and restart packratd
doctor-schedule-next = { $schedule }; next run { $next }
doctor-never = never
doctor-fired = fired ({ $plan })
doctor-slot-fired = last due slot fired ({ $plan })
doctor-not-due = not due yet
doctor-slot-ok = the { $kind } slot of { $at } fired
doctor-slot-due = the { $kind } slot of { $at } is due just now
doctor-last-fired = last fired slot { $at }
doctor-never-fired = never fired
doctor-why-daemon-down = packratd is not running
doctor-fix-catch-up = start packratd; it catches up once (catch_up = { $catch_up })
doctor-why-new-plan = a new plan waits for its first slot after packratd started
doctor-fix-wait-or-run = wait for the next slot, or run it now: `packrat run { $plan }`
doctor-why-skipped = catch_up = { $catch_up } skipped it
doctor-fix-run-now = run it now: `packrat run { $plan }`
doctor-slot-missed = the { $kind } slot of { $at } did not fire ({ $last }): { $why }
doctor-last-success = last success ({ $plan })
doctor-success-old = job { $job } at { $at }, older than { $hours }h
doctor-fix-see-plan-jobs = see `packrat jobs --plan { $plan }` for why later runs failed
doctor-success-at = job { $job } at { $at }
doctor-no-success = no successful backup yet
doctor-job = job { $job }
doctor-disk-space = disk space ({ $sink })
doctor-space-low = { $free } MiB free at { $location }, below { $min } MiB
doctor-fix-space = free space, or keep fewer packs ([plans.X] retention, then `packrat prune`)
doctor-space-ok = { $free } MiB free at { $location }
doctor-space-unknown = not known for this sink
doctor-fix-sink-reachable = check that the sink is reachable
doctor-source = source reachable ({ $source })
doctor-source-ok = { $kind } source can be read
doctor-fix-source = check that the server or file of sources.{ $source } is up and readable
doctor-retention = retention ({ $plan })
doctor-future = packs dated in the future ({ $plan } on { $sink })
doctor-future-found = { $count } pack(s) started after now: { $packs }
doctor-fix-future = check the clock (NTP) of the host that wrote them; retention keeps them and does not count them as the newest pack. Verify them (`packrat verify`) and remove them by hand if they are bad
doctor-retention-none = no rule: every pack is kept

## doctor: restore leftovers
doctor-restore-leftovers-in = restore leftovers ({ $dir })
doctor-cannot-look = cannot look into { $dir }: { $error }
doctor-fix-permissions = check the directory's permissions
doctor-restore-stale = { $file } ({ $size }) was left by an interrupted restore to { $target }
doctor-fix-restore-stale = the next restore to { $target } removes it; or remove it by hand: rm '{ $file }'
doctor-restore-unknown = { $file } ({ $size }) may be left by an interrupted restore to { $target } (cannot tell whether one is still running: { $why })
doctor-fix-restore-unknown = when no restore is running, remove it: rm '{ $file }'
doctor-restore-leftovers = restore leftovers
doctor-restore-none = none in { $dirs } { $dirs ->
        [one] directory
       *[other] directories
    }{ $in_use }
doctor-restore-in-use = {" "}({ $count } temporary file(s) of restores running now)

## prune, restore, config check
prune-nothing = nothing to prune
prune-head = plan { $plan } on sink { $sink }: keep { $kept }, remove { $removed }
prune-head-dry-run = plan { $plan } on sink { $sink } (dry run): keep { $kept }, would remove { $removed }
restore-done = restored to { $target } ({ $size })
warning-fix = warning: { $warning }
    {"  "}fix: { $fix }
config-ok = config OK: { $sources } source(s), { $sinks } sink(s), { $plans } plan(s)
restore-removed-leftover = removed { $path }, left by an interrupted restore
