-- migrator:no-transaction
VACUUM FULL orders;
