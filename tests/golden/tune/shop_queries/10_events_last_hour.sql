-- name: events_last_hour
-- a recent-window aggregate
-- params_sql: SELECT t FROM generate_series(timestamptz '2024-06-01', timestamptz '2024-12-01', interval '5 days') g(t) ORDER BY t
SELECT event_type, count(*) FROM shop.events
WHERE occurred_at >= $1 AND occurred_at < $1::timestamptz + interval '6 hours'
GROUP BY event_type ORDER BY 2 DESC
