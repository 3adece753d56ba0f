-- name: part_suppliers_by_cost
-- Sourcing: who supplies a part, cheapest first.
-- params_sql: SELECT p_partkey FROM part ORDER BY md5(p_partkey::text) LIMIT 50
SELECT ps_suppkey, ps_supplycost, ps_availqty
FROM partsupp
WHERE ps_partkey = $1
ORDER BY ps_supplycost
