-- name: order_lines
-- An order's detail page: its line items.
-- params_sql: SELECT o_orderkey FROM orders ORDER BY md5(o_orderkey::text) LIMIT 50
SELECT l_linenumber, l_partkey, l_suppkey, l_quantity, l_extendedprice, l_discount, l_shipdate
FROM lineitem
WHERE l_orderkey = $1
ORDER BY l_linenumber
