-- Issue 6: scheduled sending and idempotency keys.
-- send_at: when a scheduled message is released. Its queue rows are due then (next_attempt_at), so the
-- worker's ordinary claim releases it; the API shows Status "Scheduled" while send_at is ahead.
ALTER TABLE messages ADD COLUMN send_at BIGINT;
-- One row per (server, Idempotency-Key). A send's answer is recorded in the transaction that stores its
-- messages, so a key is never "done" without its mail, nor its mail stored without the key done.
CREATE TABLE idempotency_keys (
    server_id BIGINT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    status_code BIGINT,
    response TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (server_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
