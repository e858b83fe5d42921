-- users_email_idx was built CONCURRENTLY by the migration before.
ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_idx;
