-- name: q11
-- TPC-H Q11 (bench/queries_tpch/q11.sql) with every column qualified by its table
SELECT partsupp.ps_partkey, sum(partsupp.ps_supplycost * partsupp.ps_availqty) AS value
FROM partsupp, supplier, nation
WHERE partsupp.ps_suppkey = supplier.s_suppkey
  AND supplier.s_nationkey = nation.n_nationkey
  AND nation.n_name = 'GERMANY'
GROUP BY partsupp.ps_partkey
HAVING sum(partsupp.ps_supplycost * partsupp.ps_availqty) > (
    SELECT sum(ps2.ps_supplycost * ps2.ps_availqty) * 0.0001
    FROM partsupp ps2, supplier s2, nation n2
    WHERE ps2.ps_suppkey = s2.s_suppkey
      AND s2.s_nationkey = n2.n_nationkey
      AND n2.n_name = 'GERMANY')
ORDER BY 2 DESC
