-- Sequences of the given schemas, the column that owns each (if any; identity columns included),
-- and their current value. Sequences are not replicated: Ferry synchronises them at cutover.
SELECT s.schemaname AS schema,
       s.sequencename AS sequence,
       quote_ident(s.schemaname) || '.' || quote_ident(s.sequencename) AS qualified,
       s.last_value,
       s.increment_by,
       owner_table.relname AS owner_table,
       owner_column.attname AS owner_column,
       d.deptype = 'i' AS identity
FROM pg_sequences s
JOIN pg_class seq ON seq.relname = s.sequencename
JOIN pg_namespace sn ON sn.oid = seq.relnamespace AND sn.nspname = s.schemaname
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = seq.oid
     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
LEFT JOIN pg_class owner_table ON owner_table.oid = d.refobjid
LEFT JOIN pg_attribute owner_column ON owner_column.attrelid = d.refobjid AND owner_column.attnum = d.refobjsubid
WHERE s.schemaname = ANY(%(schemas)s)
ORDER BY 1, 2
