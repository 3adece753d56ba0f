-- in a plain WITH, a CTE sees only the CTEs before it: `b` inside `a` is the table
WITH a AS (SELECT * FROM b), b AS (SELECT 1 AS x) SELECT * FROM a, b
