SELECT c.id,
       (SELECT max(o.total) FROM orders o WHERE o.customer_id = c.id) AS biggest
FROM (SELECT * FROM customers WHERE active) c
WHERE EXISTS (SELECT 1 FROM sessions s WHERE s.customer_id = c.id)
  AND c.region IN (SELECT region FROM ref.regions)
HAVING count(*) > (SELECT count(*) FROM thresholds)
