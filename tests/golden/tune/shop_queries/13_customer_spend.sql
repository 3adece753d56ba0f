-- name: customer_spend
-- a foreign-key join: a customer's orders and their lines
-- params_sql: SELECT customer_id FROM shop.customers WHERE customer_id % 71 = 9 ORDER BY customer_id LIMIT 40
SELECT o.order_id, sum(i.quantity * i.unit_price) AS value
FROM shop.orders o JOIN shop.order_items i ON i.order_id = o.order_id
WHERE o.customer_id = $1 GROUP BY o.order_id
