-- name: product_sales
-- params_sql: SELECT product_id FROM shop.products WHERE product_id % 13 = 2 ORDER BY product_id LIMIT 40
SELECT count(*) AS lines, sum(quantity) AS units FROM shop.order_items WHERE product_id = $1
