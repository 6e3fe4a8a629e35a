# packrat 面向运维人员的文本，简体中文。键与 en.ftl 一一对应。

## 任务消息
job-completed = 备份完成
job-completed-synced = 备份完成（已同步）
job-completed-not-synced = 备份完成（同步失败：{ $reason }）
job-failed = 备份失败：{ $reason }
job-cancelled = 已由 { $who } 取消
