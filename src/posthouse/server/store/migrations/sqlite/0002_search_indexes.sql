-- Message search that stays fast at millions of messages (issue 4: < 100 ms with a filter at 1M).
-- recipient: an exact (case-insensitive) match on the per-recipient queue rows.
CREATE INDEX deliveries_by_recipient ON deliveries (lower(recipient));
CREATE INDEX messages_by_tag ON messages (server_id, stream, tag, received_at);
CREATE INDEX messages_by_sender ON messages (server_id, stream, lower(from_email), received_at);
CREATE INDEX messages_by_status ON messages (server_id, stream, status, received_at);
-- metadata_<key>=<value>: one row per metadata pair, looked up exactly.
CREATE TABLE message_metadata (
    message_id TEXT NOT NULL,
    server_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX message_metadata_lookup ON message_metadata (server_id, key, value);
INSERT INTO message_metadata (message_id, server_id, key, value)
    SELECT m.message_id, m.server_id, j.key, j.value FROM messages m, json_each(m.metadata) j;
