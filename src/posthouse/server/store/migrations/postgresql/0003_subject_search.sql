-- Subject search (`GET /messages/outbound?subject=`) is a substring match: a trigram index answers
-- `lower(subject) LIKE '%…%'` at a million messages (issue 4) where a scan took seconds.
-- pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX messages_by_subject ON messages USING gin (lower(subject) gin_trgm_ops);
