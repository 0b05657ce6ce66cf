-- Issue 5: bounce search, suppressions per stream, webhooks with a durable outbox and a delivery log.
CREATE INDEX bounces_by_email ON bounces (server_id, lower(email));
CREATE INDEX bounces_by_message ON bounces (message_id);
-- One row per suppressed address of a stream; `email` is lower-cased. A hard bounce or spam complaint
-- inserts one in the transaction that records it; deleting one reactivates the address.
CREATE TABLE suppressions (
    server_id INTEGER NOT NULL,
    stream TEXT NOT NULL,
    email TEXT NOT NULL,
    reason TEXT NOT NULL,
    origin TEXT NOT NULL,
    bounce_id INTEGER,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (server_id, stream, email)
);
-- AUTOINCREMENT: a deleted webhook's id is never given to a new one.
CREATE TABLE webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id INTEGER NOT NULL,
    stream TEXT NOT NULL,
    url TEXT NOT NULL,
    http_auth_username TEXT,
    http_auth_password TEXT,
    http_headers TEXT NOT NULL,
    on_open INTEGER NOT NULL,
    open_first_only INTEGER NOT NULL,
    on_click INTEGER NOT NULL,
    on_delivery INTEGER NOT NULL,
    on_bounce INTEGER NOT NULL,
    bounce_content INTEGER NOT NULL,
    on_spam_complaint INTEGER NOT NULL,
    spam_complaint_content INTEGER NOT NULL,
    on_subscription_change INTEGER NOT NULL,
    secret TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX webhooks_by_stream ON webhooks (server_id, stream);
-- The outbox: one row per (event, webhook), written in the transaction of the event (docs/architecture.md §5).
-- `event_id` is the Standard Webhooks `webhook-id`, the same on every retry. While a post is leased,
-- next_attempt_at holds the lease expiry (as for deliveries).
CREATE TABLE webhook_posts (
    id INTEGER PRIMARY KEY,
    webhook_id INTEGER NOT NULL,
    server_id INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    record_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    bounce_id INTEGER,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_owner TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX webhook_posts_due ON webhook_posts (next_attempt_at) WHERE state IN ('pending', 'sending');
CREATE INDEX webhook_posts_by_webhook ON webhook_posts (webhook_id, id);
CREATE TABLE webhook_attempts (
    id INTEGER PRIMARY KEY,
    post_id INTEGER NOT NULL,
    attempted_at INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    response_excerpt TEXT NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    error TEXT
);
CREATE INDEX webhook_attempts_by_post ON webhook_attempts (post_id, id);
-- Secrets Posthouse keeps for itself (the VERP token key), shared by every node.
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
