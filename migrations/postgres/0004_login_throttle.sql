-- Failed sign-ins in a row, and until when (unix ms) sign-in is locked
-- after too many of them.
ALTER TABLE accounts ADD COLUMN failed_logins BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN locked_until BIGINT NOT NULL DEFAULT 0;
