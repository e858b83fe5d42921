-- An index on a busy table, built the blocking way.
CREATE INDEX users_email_idx ON users (email);
