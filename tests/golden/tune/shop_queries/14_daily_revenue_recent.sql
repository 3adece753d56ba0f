-- name: daily_revenue_recent
-- params_sql: SELECT d::date FROM generate_series(date '2024-11-01', date '2024-12-20', interval '2 days') g(d) ORDER BY d
SELECT ordered_at, count(*), sum(total) FROM shop.orders WHERE ordered_at >= $1 GROUP BY ordered_at ORDER BY ordered_at
