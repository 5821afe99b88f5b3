-- A table's columns in order with their types, to build its row hash.
SELECT quote_ident(a.attname) AS "column", format_type(a.atttypid, a.atttypmod) AS type
FROM pg_attribute a
WHERE a.attrelid = %(table)s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
