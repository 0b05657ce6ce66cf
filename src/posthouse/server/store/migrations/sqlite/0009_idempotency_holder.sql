-- Which request holds an idempotency key: its answer is written only if it still holds it, so a retry
-- that took over a stale hold and the original request can never both store their mail.
ALTER TABLE idempotency_keys ADD COLUMN holder TEXT;
