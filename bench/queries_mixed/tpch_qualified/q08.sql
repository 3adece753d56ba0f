-- name: q08
-- TPC-H Q8 (bench/queries_tpch/q08.sql) with every column qualified by its table and the derived table
-- folded into the query (the same result): postgres-mcp 0.3.0 takes a derived table's columns for a table's
SELECT extract(year FROM orders.o_orderdate) AS o_year,
       sum(CASE WHEN n2.n_name = 'BRAZIL' THEN lineitem.l_extendedprice * (1 - lineitem.l_discount) ELSE 0 END)
       / sum(lineitem.l_extendedprice * (1 - lineitem.l_discount)) AS mkt_share
FROM part, supplier, lineitem, orders, customer, nation n1, nation n2, region
WHERE part.p_partkey = lineitem.l_partkey
  AND supplier.s_suppkey = lineitem.l_suppkey
  AND lineitem.l_orderkey = orders.o_orderkey
  AND orders.o_custkey = customer.c_custkey
  AND customer.c_nationkey = n1.n_nationkey
  AND n1.n_regionkey = region.r_regionkey
  AND region.r_name = 'AMERICA'
  AND supplier.s_nationkey = n2.n_nationkey
  AND orders.o_orderdate BETWEEN date '1995-01-01' AND date '1996-12-31'
  AND part.p_type = 'ECONOMY ANODIZED STEEL'
GROUP BY 1
ORDER BY 1
