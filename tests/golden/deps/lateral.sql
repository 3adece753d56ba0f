SELECT c.id, last.total
FROM customers c
CROSS JOIN LATERAL (SELECT total FROM orders o WHERE o.customer_id = c.id ORDER BY ordered_at DESC LIMIT 1) last
LEFT JOIN LATERAL jsonb_array_elements(c.tags) t(tag) ON true
