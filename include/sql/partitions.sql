-- Every partition (at any depth) of the partitioned tables of the given schemas, with its bounds.
WITH RECURSIVE tree AS (
    SELECT c.oid AS root, c.oid AS relid
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'p' AND NOT c.relispartition AND n.nspname = ANY(%(schemas)s)
    UNION ALL
    SELECT t.root, i.inhrelid FROM tree t JOIN pg_inherits i ON i.inhparent = t.relid
)
SELECT quote_ident(rn.nspname) || '.' || quote_ident(r.relname) AS root,
       quote_ident(ln.nspname) || '.' || quote_ident(l.relname) AS partition,
       pg_get_expr(l.relpartbound, l.oid) AS bounds
FROM tree t
JOIN pg_class r ON r.oid = t.root
JOIN pg_namespace rn ON rn.oid = r.relnamespace
JOIN pg_class l ON l.oid = t.relid
JOIN pg_namespace ln ON ln.oid = l.relnamespace
WHERE t.relid <> t.root
ORDER BY 1, 2
