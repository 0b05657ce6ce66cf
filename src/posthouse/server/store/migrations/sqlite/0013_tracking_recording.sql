-- Issue 13, recording opens and clicks (services/tracking.py).

-- Per delivery and tracked link: clicks so far and the first one's time. One upsert tells a recipient's
-- first click of a link (Postmark's unique click, the only kind its Click webhook posts) from a repeat.
CREATE TABLE link_engagements (
    delivery_id INTEGER NOT NULL,
    link INTEGER NOT NULL,
    clicks INTEGER NOT NULL DEFAULT 0,
    first_click_at INTEGER,
    PRIMARY KEY (delivery_id, link)
);

-- A hit no person made (a mail gateway's link scanner, Apple Mail Privacy Protection's prefetch, a
-- crawler): kept, but never counted as an open or click (domain/useragents.py).
ALTER TABLE tracking_hits ADD COLUMN automated INTEGER NOT NULL DEFAULT 0;
