WITH a AS (SELECT * FROM payments),
     b AS (SELECT * FROM a JOIN refunds USING (payment_id)),
     c AS (SELECT * FROM b)
SELECT * FROM c
