-- Each process keeps a Bloom filter of the suppressed addresses (services/hints.py) and reads only the
-- suppressions added or changed since its last look: by time, so by this index.
CREATE INDEX suppressions_by_time ON suppressions (created_at);
