-- migrator:no-transaction
REINDEX INDEX CONCURRENTLY orders_created_idx;
