-- name: orders_of_customer
-- A customer's order history page: their latest 20 orders.
-- params_sql: SELECT c_custkey FROM customer ORDER BY md5(c_custkey::text) LIMIT 50
SELECT o_orderkey, o_orderdate, o_orderstatus, o_totalprice
FROM orders
WHERE o_custkey = $1
ORDER BY o_orderdate DESC
LIMIT 20
