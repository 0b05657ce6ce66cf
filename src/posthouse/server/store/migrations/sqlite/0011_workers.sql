-- Issue 12: one row per running worker process (its delivery worker, webhook dispatcher and bulk expander
-- share one lease owner name), so another process can tell that it is gone and release its leases at once
-- instead of waiting for them to expire (workers/presence.py). `lock_file` is held locked (flock) by the
-- process for its lifetime: a process that can open and lock it knows the owner is dead. `heartbeat_at`
-- (the database's clock, µs) is renewed every few seconds: where the lock file cannot be seen (another
-- machine), a heartbeat older than `worker_dead_after` means dead. `lease_micros` is the longest lease
-- the owner takes, which bounds where its leases can be in the due indexes.
CREATE TABLE workers (
    owner TEXT PRIMARY KEY,
    lock_file TEXT NOT NULL,
    lease_micros INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
