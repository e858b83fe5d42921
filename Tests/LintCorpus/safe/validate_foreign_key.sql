-- The constraint was added NOT VALID by an earlier migration.
ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk;
