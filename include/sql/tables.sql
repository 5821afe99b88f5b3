-- Ordinary and partitioned tables of the given schemas, with what logical replication needs to
-- identify a row: a primary key, or a replica identity (USING INDEX or FULL).
SELECT n.nspname AS schema,
       c.relname AS "table",
       quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified,
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p') AS has_primary_key,
       c.relreplident AS replica_identity,
       c.reltuples::bigint AS estimated_rows
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND NOT c.relispartition
  AND n.nspname = ANY(%(schemas)s)
ORDER BY 1, 2
