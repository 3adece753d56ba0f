-- name: customer_open_orders
-- A customer's open orders (status O), oldest first.
-- params_sql: SELECT c_custkey FROM customer ORDER BY md5('open' || c_custkey::text) LIMIT 50
SELECT o_orderkey, o_orderdate, o_totalprice, o_orderpriority
FROM orders
WHERE o_custkey = $1 AND o_orderstatus = 'O'
ORDER BY o_orderdate
