-- Materialized views of the given schemas: replication carries their tables, not their contents.
SELECT quote_ident(schemaname) || '.' || quote_ident(matviewname) AS view, ispopulated AS populated
FROM pg_matviews
WHERE schemaname = ANY(%(schemas)s)
ORDER BY 1
