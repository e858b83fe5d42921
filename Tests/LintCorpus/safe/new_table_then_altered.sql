CREATE TABLE coupons (id bigint GENERATED ALWAYS AS IDENTITY, code text);
ALTER TABLE coupons ADD CONSTRAINT coupons_pkey PRIMARY KEY (id);
ALTER TABLE coupons ADD CONSTRAINT coupons_code_key UNIQUE (code);
ALTER TABLE coupons ALTER COLUMN code SET NOT NULL;
ALTER TABLE coupons RENAME COLUMN code TO coupon_code;
