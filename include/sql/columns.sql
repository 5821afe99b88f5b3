-- Columns of the tables of the given schemas with their exact types, nullability and defaults, for schema drift.
SELECT n.nspname AS schema,
       c.relname AS "table",
       a.attname AS "column",
       quote_ident(a.attname) AS quoted,
       format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null,
       pg_get_expr(d.adbin, d.adrelid) AS "default",
       a.attgenerated <> '' AS generated,
       row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum)::int AS position
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relkind IN ('r', 'p')
  AND NOT c.relispartition
  AND a.attnum > 0
  AND NOT a.attisdropped
  AND n.nspname = ANY(%(schemas)s)
ORDER BY 1, 2, a.attnum
