-- a schema-qualified name is never a CTE, even when a CTE has the same bare name
WITH orders AS (SELECT 1 AS id) SELECT * FROM orders, public.orders
