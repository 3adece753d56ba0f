-- name: orders_of_customer
-- target_ms: 50
-- params_sql: SELECT customer_id FROM shop.customers WHERE customer_id % 89 = 3 ORDER BY customer_id LIMIT 40
SELECT order_id, status, total, ordered_at
FROM shop.orders WHERE customer_id = $1 ORDER BY ordered_at DESC LIMIT 20
