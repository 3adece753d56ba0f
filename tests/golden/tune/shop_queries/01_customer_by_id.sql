-- name: customer_by_id
-- params_sql: SELECT customer_id FROM shop.customers WHERE customer_id % 97 = 0 ORDER BY customer_id LIMIT 40
SELECT * FROM shop.customers WHERE customer_id = $1
