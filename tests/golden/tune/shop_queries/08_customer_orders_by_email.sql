-- name: customer_orders_by_email
-- unqualified column names across two tables: each must be resolved to its own table
-- params_sql: SELECT email FROM shop.customers WHERE customer_id % 83 = 7 ORDER BY customer_id LIMIT 40
SELECT full_name, order_id, total, ordered_at
FROM shop.customers JOIN shop.orders USING (customer_id)
WHERE email = $1 AND status <> 'F'
