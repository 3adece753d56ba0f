-- name: q22
-- TPC-H Q22 (bench/queries_tpch/q22.sql) with every column qualified by its table and the derived table
-- folded into the query (the same result): postgres-mcp 0.3.0 takes a derived table's columns for a table's
SELECT substring(customer.c_phone FROM 1 FOR 2) AS cntrycode, count(*) AS numcust,
       sum(customer.c_acctbal) AS totacctbal
FROM customer
WHERE substring(customer.c_phone FROM 1 FOR 2) IN ('13', '31', '23', '29', '30', '18', '17')
  AND customer.c_acctbal > (SELECT avg(c2.c_acctbal) FROM customer c2
                            WHERE c2.c_acctbal > 0.00
                              AND substring(c2.c_phone FROM 1 FOR 2) IN ('13', '31', '23', '29', '30', '18', '17'))
  AND NOT EXISTS (SELECT * FROM orders WHERE orders.o_custkey = customer.c_custkey)
GROUP BY 1
ORDER BY 1
