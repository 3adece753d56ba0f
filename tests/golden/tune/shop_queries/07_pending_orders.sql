-- name: pending_orders
-- recent pending orders for the warehouse screen: a constant predicate, a top-N
SELECT order_id, customer_id, total, ordered_at
FROM shop.orders WHERE status = 'P' ORDER BY ordered_at DESC LIMIT 50
