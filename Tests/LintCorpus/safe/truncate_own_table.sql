TRUNCATE import_staging;
