SELECT * FROM "Sales"."Order Lines" ol
JOIN "Products" p ON p.id = ol.product_id
JOIN Staging.Stores s ON s.id = ol.store_id   -- unquoted names fold to lower case
