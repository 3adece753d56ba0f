-- name: customer_by_email
-- params_sql: SELECT email FROM shop.customers WHERE customer_id % 97 = 1 ORDER BY customer_id LIMIT 40
SELECT customer_id, full_name, segment FROM shop.customers WHERE email = $1
