-- Posthouse schema, SQLite dialect. Times are integer microseconds since the Unix epoch (UTC).
-- AUTOINCREMENT: a deleted server's id is never given to a new server.
CREATE TABLE servers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    settings TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    server_id INTEGER REFERENCES servers(id) ON DELETE CASCADE,
    hint TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE message_streams (
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    stream_type TEXT NOT NULL,
    unsubscribe_handling TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER,
    archived_at INTEGER,
    PRIMARY KEY (server_id, id)
);
CREATE TABLE messages (
    message_id TEXT PRIMARY KEY,
    server_id INTEGER NOT NULL,
    stream TEXT NOT NULL,
    sender TEXT NOT NULL,
    from_email TEXT NOT NULL,
    envelope_from TEXT NOT NULL,
    subject TEXT NOT NULL,
    tag TEXT,
    to_json TEXT NOT NULL,
    cc_json TEXT NOT NULL,
    bcc_json TEXT NOT NULL,
    recipients TEXT NOT NULL,
    metadata TEXT NOT NULL,
    attachments TEXT NOT NULL,
    track_opens INTEGER NOT NULL,
    track_links TEXT NOT NULL,
    status TEXT NOT NULL,
    sandboxed INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    size INTEGER NOT NULL,
    content BLOB NOT NULL
);
CREATE INDEX messages_by_time ON messages (server_id, stream, received_at DESC);
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_owner TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_reply TEXT
);
-- The claim query reads only pending rows, so the index stays small however many rows finished.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state IN ('queued', 'deferred', 'sending');
CREATE INDEX deliveries_by_message ON deliveries (message_id);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    server_id INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    type TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    details TEXT NOT NULL,
    bounce_id INTEGER
);
CREATE INDEX events_by_message ON events (message_id);
CREATE TABLE bounces (
    id INTEGER PRIMARY KEY,
    server_id INTEGER NOT NULL,
    message_id TEXT,
    stream TEXT NOT NULL,
    type TEXT NOT NULL,
    type_code INTEGER NOT NULL,
    email TEXT NOT NULL,
    sender TEXT NOT NULL,
    subject TEXT NOT NULL,
    tag TEXT,
    description TEXT NOT NULL,
    details TEXT NOT NULL,
    bounced_at INTEGER NOT NULL,
    inactive INTEGER NOT NULL,
    can_activate INTEGER NOT NULL,
    dump TEXT NOT NULL
);
CREATE INDEX bounces_by_time ON bounces (server_id, bounced_at DESC);
