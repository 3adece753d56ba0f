-- name: revenue_week
-- params_sql: SELECT d::date, d::date + 7 FROM generate_series(date '2024-01-01', date '2024-12-01', interval '9 days') g(d) ORDER BY d
SELECT count(*) AS orders, sum(total) AS revenue FROM shop.orders WHERE ordered_at >= $1 AND ordered_at < $2
