-- name: user_recent_events
-- params_sql: SELECT customer_id FROM shop.customers WHERE customer_id % 79 = 11 ORDER BY customer_id LIMIT 40
SELECT event_type, occurred_at FROM shop.events WHERE user_id = $1 ORDER BY occurred_at DESC LIMIT 50
