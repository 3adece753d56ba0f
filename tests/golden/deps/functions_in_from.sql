SELECT d::date AS day, coalesce(n, 0) AS n
FROM generate_series('2026-01-01'::date, '2026-01-31', interval '1 day') d
LEFT JOIN (SELECT ordered_at, count(*) AS n FROM orders GROUP BY 1) x ON x.ordered_at = d
CROSS JOIN ROWS FROM (unnest(ARRAY[1, 2]), generate_series(1, (SELECT count(*) FROM limits)::int)) r(a, b)
