-- Indexes of the tables of the given schemas that no constraint owns (primary keys, unique and exclusion
-- constraints are compared as constraints), with their definitions, for schema drift.
SELECT n.nspname AS schema,
       c.relname AS "table",
       i.relname AS "index",
       quote_ident(n.nspname) || '.' || quote_ident(i.relname) AS quoted,
       pg_get_indexdef(x.indexrelid) AS definition
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND NOT c.relispartition
  AND n.nspname = ANY(%(schemas)s)
  AND NOT EXISTS (
      SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.conrelid = c.oid AND k.contype IN ('p', 'u', 'x')
  )
ORDER BY 1, 2, 3
