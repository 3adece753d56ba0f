-- name: suppliers_of_nation
-- Purchasing: a nation's suppliers by account balance, richest first.
-- params_sql: SELECT n_nationkey FROM nation ORDER BY n_nationkey
SELECT s_suppkey, s_name, s_phone, s_acctbal
FROM supplier
WHERE s_nationkey = $1
ORDER BY s_acctbal DESC
LIMIT 20
