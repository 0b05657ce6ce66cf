-- Issue 16: inbound mail (docs/postmark-api.md §4.6, §8.5, §10). A received message is stored once in
-- `inbound_contents` (as received, with the trace headers Posthouse added) and listed once per recipient it
-- came to in `inbound_messages`, all in the transaction that answers 250.
CREATE TABLE inbound_contents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    content BLOB NOT NULL
);
-- `recipients` is "|a@x|b@y|": the envelope recipient and the To and Cc addresses, lower-cased, for the
-- `recipient` filter. `summary` holds the list item's address fields and attachment list (JSON). `reason`
-- says why a message is Blocked or Failed (BlockedReason).
CREATE TABLE inbound_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    server_id INTEGER NOT NULL,
    stream TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    envelope_sender TEXT NOT NULL,
    original_recipient TEXT NOT NULL,
    mailbox_hash TEXT NOT NULL,
    from_email TEXT NOT NULL,
    subject TEXT NOT NULL,
    tag TEXT NOT NULL,
    recipients TEXT NOT NULL,
    summary TEXT NOT NULL,
    spam_score DOUBLE PRECISION,
    content_id INTEGER NOT NULL
);
CREATE INDEX inbound_messages_by_server ON inbound_messages (server_id, id);
CREATE INDEX inbound_messages_by_time ON inbound_messages (server_id, received_at);
-- Inbound rules (Postmark's "triggers"): a sender address or domain whose mail is Blocked.
CREATE TABLE inbound_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id INTEGER NOT NULL,
    rule TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX inbound_rules_unique ON inbound_rules (server_id, lower(rule));
-- The server's InboundHookUrl is a hidden webhook of its inbound stream (as the outbound hook URLs are,
-- migration 0010) with this trigger; a post of an inbound message names it.
ALTER TABLE webhooks ADD COLUMN on_inbound INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhook_posts ADD COLUMN inbound_id INTEGER;
CREATE INDEX webhook_posts_by_inbound ON webhook_posts (inbound_id) WHERE inbound_id IS NOT NULL;
