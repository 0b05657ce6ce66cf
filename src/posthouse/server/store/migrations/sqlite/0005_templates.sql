-- Issue 6: Postmark templates (docs/postmark-api.md §3), Standard and Layout, per server.
-- AUTOINCREMENT: a deleted template's id is never given to a new one. A delete only clears `active`
-- (a deleted template still reads back by id with Active: false, as Postmark's does), so its alias is
-- free again: aliases are unique per server, case-insensitively, among active templates only.
-- `layout_template` is the alias of a Layout of the same server (Postmark links layouts by alias).
CREATE TABLE templates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id INTEGER NOT NULL,
    alias TEXT,
    name TEXT NOT NULL,
    subject TEXT,
    html_body TEXT,
    text_body TEXT,
    template_type TEXT NOT NULL,
    layout_template TEXT,
    active INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX templates_alias ON templates (server_id, lower(alias)) WHERE active = 1 AND alias IS NOT NULL;
CREATE INDEX templates_by_server ON templates (server_id, active, id);
CREATE INDEX templates_by_layout ON templates (server_id, lower(layout_template)) WHERE layout_template IS NOT NULL;
