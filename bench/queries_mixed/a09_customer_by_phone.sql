-- name: customer_by_phone
-- Support desk: find the caller by phone number.
-- params_sql: SELECT c_phone FROM customer ORDER BY md5('phone' || c_custkey::text) LIMIT 50
SELECT c_custkey, c_name, c_address, c_acctbal
FROM customer
WHERE c_phone = $1
