-- Every appid ever registered, kept when its app is deleted. Records that
-- outlive an app name it (payments and ledger entries, users' inboxes), and
-- a user's openid in an app depends on the appid alone, so an appid is
-- never handed out twice.
CREATE TABLE appids (
    appid       TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL
);
-- Live apps, and the apps deleted before this table that such records name.
INSERT INTO appids (appid, created_at)
SELECT appid, MIN(created_at) FROM (
    SELECT appid, created_at FROM apps
    UNION ALL SELECT appid, created_at FROM pay_orders
    UNION ALL SELECT appid, created_at FROM ledger WHERE appid <> ''
    UNION ALL SELECT appid, created_at FROM messages
    UNION ALL SELECT appid, created_at FROM outbox
) AS named
GROUP BY appid;
