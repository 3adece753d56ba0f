-- name: daily_totals_week
-- Reporting: orders and revenue per day over a week.
-- params_sql: SELECT d, d + 7 FROM (SELECT date '1992-01-01' + (i * 53) % 2350 AS d FROM generate_series(1, 50) i) x
SELECT o_orderdate, count(*) AS orders, sum(o_totalprice) AS revenue
FROM orders
WHERE o_orderdate >= $1 AND o_orderdate < $2
GROUP BY o_orderdate
ORDER BY o_orderdate
