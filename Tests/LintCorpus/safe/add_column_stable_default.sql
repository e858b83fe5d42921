ALTER TABLE users ADD COLUMN joined_at timestamptz DEFAULT now();
