-- Each table's estimated rows and size on disk (what a copy of it has to move), by its quoted qualified name.
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified,
       greatest(c.reltuples, 0)::bigint AS rows_estimate, pg_table_size(c.oid) AS bytes
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%(schemas)s)
