-- Issue 6: bulk sending. A bulk request is stored whole when accepted and expanded in the background,
-- a chunk of messages at a time; each chunk commits with its messages and its bulk_chunks row, whose
-- primary key makes a chunk expanded twice (a lost lease) fail instead of sending twice.
CREATE TABLE bulk_requests (
    id TEXT PRIMARY KEY,
    server_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    total INTEGER NOT NULL,
    position INTEGER NOT NULL,
    released_count INTEGER NOT NULL,
    failed_count INTEGER NOT NULL,
    subject TEXT,
    request TEXT NOT NULL,
    submitted_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER NOT NULL
);
CREATE INDEX bulk_requests_due ON bulk_requests (lease_until) WHERE status IN ('Accepted', 'Processing');
CREATE INDEX bulk_requests_by_server ON bulk_requests (server_id, submitted_at, id);
CREATE TABLE bulk_chunks (
    bulk_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (bulk_id, position)
);
