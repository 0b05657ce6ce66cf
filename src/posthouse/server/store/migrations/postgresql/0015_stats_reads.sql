-- Issue 13, reads: a stats endpoint asks for a few metrics (or one family's, by prefix) of one server
-- over a range of days. The primary key leads with the day, so it would read every metric of every day;
-- this index leads with the metric and covers the sum, so an answer reads only its own rows. The metric
-- is ordered bytewise (COLLATE "C") so a family's prefix range is exact under any database collation;
-- store/stats.py queries with the same collation.
CREATE INDEX stats_daily_by_metric ON stats_daily (server_id, metric COLLATE "C", day, stream, tag) INCLUDE (value);

-- The Opens and Clicks searches always name a stream (`outbound` by default) and list newest first, then
-- by id: with the stream in the index their count is an index-only scan, and walking the index backwards
-- gives their order (on SQLite the rowid, which is `id`, ends every index anyway).
DROP INDEX tracking_hits_by_server;
CREATE INDEX tracking_hits_by_server ON tracking_hits (server_id, kind, stream, occurred_at, id);

-- Opens and clicks searched by recipient (To, Cc or Bcc), case-insensitively, newest first.
CREATE INDEX tracking_hits_by_recipient ON tracking_hits (server_id, lower(recipient), kind, occurred_at);
