-- Issue 13: open and click tracking, and the stats rollups. The signing key of tracking tokens
-- (domain/tracking.py) is the installation secret 'tracking-key' in `secrets`.

-- The links a tracked message's content points at, numbered from 1 as in its tokens. A URL found in
-- both the HTML and the text part has a number for each, so a click knows its ClickLocation.
CREATE TABLE message_links (
    message_id TEXT NOT NULL,
    link INTEGER NOT NULL,
    url TEXT NOT NULL,
    location TEXT NOT NULL,
    PRIMARY KEY (message_id, link)
);

-- Every open and click, with what Postmark's Open and Click records show.
CREATE TABLE tracking_hits (
    id INTEGER PRIMARY KEY,
    server_id INTEGER NOT NULL,
    stream TEXT NOT NULL,
    message_id TEXT NOT NULL,
    delivery_id INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    tag TEXT,
    kind TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    first INTEGER NOT NULL,
    proxy INTEGER NOT NULL,
    platform TEXT NOT NULL,
    client_name TEXT,
    client_company TEXT,
    client_family TEXT,
    os_name TEXT,
    os_company TEXT,
    os_family TEXT,
    user_agent TEXT NOT NULL,
    ip TEXT,
    country_iso TEXT,
    country TEXT,
    region_iso TEXT,
    region TEXT,
    city TEXT,
    zip TEXT,
    coords TEXT,
    link INTEGER,
    url TEXT,
    click_location TEXT
);
CREATE INDEX tracking_hits_by_server ON tracking_hits (server_id, kind, occurred_at DESC);
CREATE INDEX tracking_hits_by_message ON tracking_hits (message_id, kind, occurred_at);

-- Per delivery: how many opens and clicks so far, and when the first came; one upsert tells a first
-- from a repeat.
CREATE TABLE engagements (
    delivery_id INTEGER PRIMARY KEY,
    opens INTEGER NOT NULL DEFAULT 0,
    clicks INTEGER NOT NULL DEFAULT 0,
    first_open_at INTEGER,
    first_click_at INTEGER
);

-- Stats rollups (domain/stats.py names the metrics): a counter per server, UTC day (days since
-- 1970-01-01), stream, tag ('' for none) and metric, incremented in the transaction that records what
-- it counts. /stats reads only these, never the raw events.
CREATE TABLE stats_daily (
    server_id INTEGER NOT NULL,
    day INTEGER NOT NULL,
    stream TEXT NOT NULL,
    tag TEXT NOT NULL,
    metric TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (server_id, day, stream, tag, metric)
);
