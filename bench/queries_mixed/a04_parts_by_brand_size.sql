-- name: parts_by_brand_size
-- Catalogue search: parts of a brand in a size, cheapest first.
-- params_sql: SELECT p_brand, p_size FROM (SELECT DISTINCT p_brand, p_size FROM part) x ORDER BY md5(p_brand || p_size::text) LIMIT 50
SELECT p_partkey, p_name, p_type, p_container, p_retailprice
FROM part
WHERE p_brand = $1 AND p_size = $2
ORDER BY p_retailprice
LIMIT 50
