-- a CTE named like a table hides the table in the rest of the statement
WITH orders AS (SELECT * FROM raw.orders WHERE status <> 'X')
SELECT o.*, c.name FROM orders o JOIN customers c ON c.id = o.customer_id
