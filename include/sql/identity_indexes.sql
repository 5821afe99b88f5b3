-- Of the given tables (quoted, schema-qualified), each unique index REPLICA IDENTITY USING INDEX accepts:
-- unique, valid, immediate, not partial, no expression, every column NOT NULL.
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified,
       quote_ident(i.relname) AS index
FROM pg_index x
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indisunique AND x.indisvalid AND x.indimmediate AND x.indpred IS NULL AND x.indexprs IS NULL
  AND quote_ident(n.nspname) || '.' || quote_ident(c.relname) = ANY(%(tables)s)
  AND NOT EXISTS (
      SELECT 1
      FROM unnest(x.indkey) AS k(attnum)
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
      WHERE NOT a.attnotnull)
ORDER BY 1, 2
