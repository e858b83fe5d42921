ALTER TYPE order_state ADD VALUE 'refunded';
UPDATE orders SET state = 'refunded' WHERE refunded_at IS NOT NULL;
