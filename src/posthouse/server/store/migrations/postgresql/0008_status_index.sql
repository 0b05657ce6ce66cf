-- The status filter now also reads send_at ("Scheduled" is Queued with send_at ahead): with send_at in
-- the index, counting a status at a million messages stays an index-only scan (349 ms without it).
DROP INDEX messages_by_status;
CREATE INDEX messages_by_status ON messages (server_id, stream, status, received_at, send_at);
