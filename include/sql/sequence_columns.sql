-- Integer columns fed by a sequence, with the sequence behind each: an identity or a serial (the sequence owned
-- by the column), and any default calling nextval() on a sequence, owned by no column too.
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS "table",
       quote_ident(a.attname) AS "column",
       pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname) AS sequence
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid AND c.relkind IN ('r', 'p')
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%(schemas)s) AND a.attnum > 0 AND NOT a.attisdropped
  AND format_type(a.atttypid, NULL) IN ('smallint', 'integer', 'bigint')
  AND pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname) IS NOT NULL
UNION
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       quote_ident(a.attname),
       quote_ident(sn.nspname) || '.' || quote_ident(s.relname)
FROM pg_attrdef ad
JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
JOIN pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_class c ON c.oid = ad.adrelid AND c.relkind IN ('r', 'p')
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
WHERE n.nspname = ANY(%(schemas)s) AND NOT a.attisdropped
  AND format_type(a.atttypid, NULL) IN ('smallint', 'integer', 'bigint')
ORDER BY 1, 2
