-- Views and materialized views of the given schemas that no extension owns, with their queries, for schema drift.
SELECT n.nspname AS schema,
       c.relname AS "view",
       quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified,
       c.relkind = 'm' AS materialized,
       pg_get_viewdef(c.oid) AS definition
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm')
  AND n.nspname = ANY(%(schemas)s)
  AND NOT EXISTS (
      SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
  )
ORDER BY 3
