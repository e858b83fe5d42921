CREATE TABLE accounts (
    id serial PRIMARY KEY,
    name varchar(100) NOT NULL,
    country char(2),
    created_at timestamp NOT NULL DEFAULT now()
);
