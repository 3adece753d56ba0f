SELECT k, v, rank() OVER (PARTITION BY k ORDER BY v) FROM (VALUES ('a', 1), ('b', 2)) AS t(k, v)
WHERE v < ALL (SELECT cap FROM caps)
