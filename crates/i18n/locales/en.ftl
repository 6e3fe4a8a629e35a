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
