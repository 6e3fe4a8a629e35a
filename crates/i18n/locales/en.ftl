# packrat's operator-facing texts, English. Keys are stable; every key exists in zh-CN.ftl too
# (a test checks it). Placeables: { $name }.

## Job messages (stored in the job record, shown on the dashboard and by `packrat jobs`)
job-completed = backup completed
job-completed-synced = backup completed (synced)
job-completed-not-synced = backup completed (replication failed: { $reason })
job-failed = backup failed: { $reason }
job-cancelled = cancelled by { $who }
