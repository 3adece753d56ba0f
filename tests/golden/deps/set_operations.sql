SELECT id FROM eu.customers
UNION
SELECT id FROM us.customers
EXCEPT
(SELECT id FROM blocked INTERSECT SELECT id FROM confirmed_blocked)
