-- Integer columns fed by a sequence (a nextval() default or an identity) and the sequence behind each.
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS "table",
       quote_ident(a.attname) AS "column",
       pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname) AS sequence
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid AND c.relkind IN ('r', 'p')
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%(schemas)s) AND a.attnum > 0 AND NOT a.attisdropped
  AND format_type(a.atttypid, NULL) IN ('smallint', 'integer', 'bigint')
  AND pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname) IS NOT NULL
ORDER BY 1, 2
