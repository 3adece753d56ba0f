-- name: order_lines
-- params_sql: SELECT order_id FROM shop.orders WHERE order_id % 101 = 5 ORDER BY order_id LIMIT 40
SELECT line_no, name, quantity, unit_price
FROM shop.order_items JOIN shop.products USING (product_id)
WHERE order_id = $1 ORDER BY line_no
