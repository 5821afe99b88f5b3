-- Columns of the given schemas' tables whose type an extension provides (citext, hstore, geometry...).
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS "table",
       quote_ident(a.attname) AS "column",
       format_type(a.atttypid, a.atttypmod) AS type,
       e.extname AS extension
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid AND c.relkind IN ('r', 'p') AND NOT c.relispartition
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type ty ON ty.oid = CASE WHEN (SELECT typelem FROM pg_type WHERE oid = a.atttypid AND typcategory = 'A') <> 0
                                  THEN (SELECT typelem FROM pg_type WHERE oid = a.atttypid) ELSE a.atttypid END
JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid = ty.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid
WHERE n.nspname = ANY(%(schemas)s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY 1, 2
