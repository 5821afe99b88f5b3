-- Tables carrying the fence's trigger.
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS "table"
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE t.tgname = 'ferry_fence'
ORDER BY 1
