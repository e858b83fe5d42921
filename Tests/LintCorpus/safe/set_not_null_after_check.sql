-- users_email_not_null is CHECK (email IS NOT NULL) NOT VALID, added by an earlier migration.
ALTER TABLE users VALIDATE CONSTRAINT users_email_not_null;
ALTER TABLE users ALTER COLUMN email SET NOT NULL;
ALTER TABLE users DROP CONSTRAINT users_email_not_null;
