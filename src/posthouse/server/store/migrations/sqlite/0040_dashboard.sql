-- Issue 15 (the dashboard, D1): operator accounts, their server-side sessions, and each webhook post's message.
-- An operator signs in to the dashboard with an email and a password (argon2id hash, never the password).
-- `email` is stored lower-cased; AUTOINCREMENT: a deleted user's id is never given to a new one.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_login_at INTEGER
);
-- A session is found by the SHA-256 of the cookie's random id (a stolen database holds no usable cookie).
-- `user_id` is NULL for a session opened with the account token. Rows are read on every dashboard request
-- by any node, so signing out or expiry holds across nodes.
CREATE TABLE dashboard_sessions (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER,
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);
CREATE INDEX dashboard_sessions_by_user ON dashboard_sessions (user_id);
CREATE INDEX dashboard_sessions_by_expiry ON dashboard_sessions (expires_at);
-- The message page lists the webhook posts of its message; posts queued before this migration have none.
ALTER TABLE webhook_posts ADD COLUMN message_id TEXT;
CREATE INDEX webhook_posts_by_message ON webhook_posts (message_id) WHERE message_id IS NOT NULL;
-- The sandbox inbox lists a stream's sandboxed mail, newest first: without this index, a server whose mail is
-- mostly delivered for real walks its whole time index to find none (0.7 s at a million messages, measured
-- with bench/dashboard.py). The query names `sandboxed = 1` literally, so the partial index applies.
CREATE INDEX messages_sandboxed ON messages (server_id, stream, received_at DESC) WHERE sandboxed = 1;
