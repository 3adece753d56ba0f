-- Seeded query shapes for the advisor tests: deterministic data, no secondary indexes.
CREATE SCHEMA app;
CREATE TABLE app.customers (id bigint PRIMARY KEY, email text NOT NULL, country text NOT NULL);
INSERT INTO app.customers
SELECT g, 'user' || g || '@example.com', (ARRAY['US','DE','FR','GB'])[1 + g % 4] FROM generate_series(1, 5000) g;
CREATE TABLE app.orders (
    id bigint PRIMARY KEY, customer_id bigint NOT NULL, shop_id int NOT NULL, status text NOT NULL,
    created_at date NOT NULL, total numeric(12,2) NOT NULL, note text
);
INSERT INTO app.orders
SELECT g, 1 + (g::bigint * 7919) % 50, 1 + (g::bigint * 104729) % 400, (ARRAY['F','F','F','F','F','F','F','F','O','P'])[1 + g % 10],
       date '2020-01-01' + (g % 1500), (g % 997) + 0.5, repeat('x', 80)
FROM generate_series(1, 60000) g;
CREATE TABLE app.items (
    order_id bigint NOT NULL, line_no int NOT NULL, product_id bigint NOT NULL, qty int NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
INSERT INTO app.items SELECT o, l, 1 + (o * 31 + l) % 2000, 1 + l FROM generate_series(1, 20000) o, generate_series(1, 3) l;
