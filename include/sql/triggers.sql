-- Triggers of the tables of the given schemas (not PostgreSQL's own, not a partition's copy of its root's, not
-- Ferry's fence), with their definitions, for schema drift.
SELECT n.nspname AS schema,
       c.relname AS "table",
       t.tgname AS "trigger",
       quote_ident(t.tgname) AS quoted,
       pg_get_triggerdef(t.oid) AS definition
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT t.tgisinternal
  AND t.tgparentid = 0
  AND t.tgname <> 'ferry_fence'
  AND c.relkind IN ('r', 'p')
  AND n.nspname = ANY(%(schemas)s)
ORDER BY 1, 2, 3
