-- name: customer_orders_since
-- composite: an equality and a range
-- params_sql: SELECT customer_id, date '2024-01-01' FROM shop.customers WHERE customer_id % 61 = 4 ORDER BY customer_id LIMIT 40
SELECT order_id, total FROM shop.orders WHERE customer_id = $1 AND ordered_at >= $2
