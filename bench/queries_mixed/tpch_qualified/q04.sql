-- name: q04
-- TPC-H Q4 (bench/queries_tpch/q04.sql) with every column qualified by its table
SELECT orders.o_orderpriority, count(*) AS order_count
FROM orders
WHERE orders.o_orderdate >= date '1993-07-01'
  AND orders.o_orderdate < date '1993-07-01' + interval '3 months'
  AND EXISTS (SELECT * FROM lineitem WHERE lineitem.l_orderkey = orders.o_orderkey
              AND lineitem.l_commitdate < lineitem.l_receiptdate)
GROUP BY orders.o_orderpriority
ORDER BY orders.o_orderpriority
