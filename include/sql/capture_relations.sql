-- Names the capture stream may give (a partition's own name) mapped to the table compared (its root),
-- both spelled as quote_ident spells them (as test_decoding does).
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name,
       quote_ident(rn.nspname) || '.' || quote_ident(r.relname) AS root
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class r ON r.oid = coalesce(pg_partition_root(c.oid), c.oid)
JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%(schemas)s)
