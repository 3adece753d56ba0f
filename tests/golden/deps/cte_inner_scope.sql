-- the inner WITH shadows `items` only inside the subquery; outside, `items` is the table
SELECT * FROM items WHERE id IN (WITH items AS (SELECT 1 AS id) SELECT id FROM items)
