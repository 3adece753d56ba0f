-- name: lineitems_shipped_by_mode
-- Logistics: the lines shipped on a day with a ship mode.
-- params_sql: SELECT date '1992-03-01' + (i * 37) % 2300, (ARRAY['AIR', 'MAIL', 'SHIP', 'TRUCK', 'RAIL', 'FOB', 'REG AIR'])[1 + i % 7] FROM generate_series(1, 50) i
SELECT l_orderkey, l_linenumber, l_quantity, l_extendedprice
FROM lineitem
WHERE l_shipdate = $1 AND l_shipmode = $2
