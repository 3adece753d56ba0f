-- name: clerk_orders_in_range
-- A clerk's orders over 30 days.
-- params_sql: SELECT o_clerk, o_orderdate, o_orderdate + 30 FROM orders ORDER BY md5(o_orderkey::text) LIMIT 50
SELECT o_orderkey, o_custkey, o_orderdate, o_totalprice
FROM orders
WHERE o_clerk = $1 AND o_orderdate >= $2 AND o_orderdate < $3
ORDER BY o_orderdate
