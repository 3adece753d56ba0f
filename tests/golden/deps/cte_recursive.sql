WITH RECURSIVE tree AS (
    SELECT id, parent_id FROM org.units WHERE parent_id IS NULL
    UNION ALL
    SELECT u.id, u.parent_id FROM org.units u JOIN tree t ON u.parent_id = t.id
)
SELECT * FROM tree
