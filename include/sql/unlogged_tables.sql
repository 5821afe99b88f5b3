-- Unlogged tables of the given schemas: they write no WAL, so logical replication cannot carry them.
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS "table"
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'u' AND n.nspname = ANY(%(schemas)s)
ORDER BY 1
