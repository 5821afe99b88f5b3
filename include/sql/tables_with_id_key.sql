-- Tables whose primary key is one integer column named id (the rehearsal finds their new rows by id).
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS "table"
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.conkey[1]
WHERE k.contype = 'p' AND array_length(k.conkey, 1) = 1 AND a.attname = 'id'
  AND a.atttypid IN ('int4'::regtype, 'int8'::regtype) AND n.nspname = ANY(%(schemas)s)
ORDER BY 1
