-- A server's legacy hook URLs (BounceHookUrl, OpenHookUrl, ClickHookUrl, DeliveryHookUrl) are kept as
-- webhooks of its default stream, marked with the setting's name: the one outbox, dispatcher and
-- retry schedule serve both kinds. /webhooks does not show them; the server's settings own them.
ALTER TABLE webhooks ADD COLUMN legacy TEXT;
CREATE UNIQUE INDEX webhooks_legacy ON webhooks (server_id, legacy) WHERE legacy IS NOT NULL;
