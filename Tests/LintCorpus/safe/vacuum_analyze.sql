-- migrator:no-transaction
VACUUM (ANALYZE) orders;
