-- CONCURRENTLY, but the file runs in a transaction (no directive): PostgreSQL refuses it.
CREATE INDEX CONCURRENTLY orders_created_idx ON orders (created_at);
