-- Issue 6: bulk sending. A bulk request is stored whole when accepted and expanded in the background,
-- a chunk of messages at a time; each chunk commits with its messages and its bulk_chunks row, whose
-- primary key makes a chunk expanded twice (a lost lease) fail instead of sending twice.
CREATE TABLE bulk_requests (
    id TEXT PRIMARY KEY,
    server_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    total BIGINT NOT NULL,
    position BIGINT NOT NULL,
    released_count BIGINT NOT NULL,
    failed_count BIGINT NOT NULL,
    subject TEXT,
    request TEXT NOT NULL,
    submitted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT NOT NULL
);
CREATE INDEX bulk_requests_due ON bulk_requests (lease_until) WHERE status IN ('Accepted', 'Processing');
CREATE INDEX bulk_requests_by_server ON bulk_requests (server_id, submitted_at, id);
CREATE TABLE bulk_chunks (
    bulk_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (bulk_id, position)
);
