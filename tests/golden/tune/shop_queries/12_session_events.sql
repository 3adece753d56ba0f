-- name: session_events
-- params_sql: SELECT session_id FROM shop.events WHERE event_id % 1499 = 3 AND session_id IS NOT NULL ORDER BY event_id LIMIT 40
SELECT event_id, event_type, occurred_at FROM shop.events WHERE session_id = $1
