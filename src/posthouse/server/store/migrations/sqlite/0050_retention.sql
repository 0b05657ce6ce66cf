-- Issue 17: retention, data removals, token rotation.

-- Retention deletes a message with its metadata rows: found by message here, not by the lookup index,
-- which leads with (server, key, value) and would be walked whole for every deleted message.
CREATE INDEX message_metadata_by_message ON message_metadata (message_id);
-- Retention walks a server's webhook posts oldest first (the outbox has no message to follow).
CREATE INDEX webhook_posts_by_server_time ON webhook_posts (server_id, created_at);

-- Postmark's Data Removal API (docs/postmark-api.md §8.4): one row per request, processed in the background
-- by the housekeeping worker in bounded batches. `requested_for` is the lower-cased address while the
-- request is Pending; once Done only its SHA-256 is kept, so the record of the request does not itself keep
-- the address. `removed` counts the rows deleted so far (progress).
CREATE TABLE data_removals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    requested_by TEXT NOT NULL,
    requested_for TEXT NOT NULL,
    notify INTEGER NOT NULL,
    status TEXT NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    completed_at INTEGER,
    lease_owner TEXT,
    lease_until INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX data_removals_pending ON data_removals (lease_until) WHERE status = 'Pending';

-- Token rotation: a rotated token keeps working until `expires_at` (µs; NULL: no end), then it is refused
-- and housekeeping deletes it.
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
