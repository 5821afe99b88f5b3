-- Estimated rows of a table, for chunking.
SELECT greatest(c.reltuples, 0)::bigint AS estimated_rows FROM pg_class c WHERE c.oid = %(table)s::regclass
