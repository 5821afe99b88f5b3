-- Application roles the write fence cannot hold: superusers and roles owning a table in scope
-- (an owner can drop the fence's trigger). Missing roles are listed too.
SELECT r.rolname AS role, r.rolsuper AS superuser,
       array_agg(DISTINCT quote_ident(n.nspname) || '.' || quote_ident(c.relname))
           FILTER (WHERE c.oid IS NOT NULL) AS owns
FROM pg_roles r
LEFT JOIN pg_class c ON c.relowner = r.oid AND c.relkind IN ('r', 'p')
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = ANY(%(schemas)s)
WHERE r.rolname = ANY(%(roles)s)
GROUP BY r.rolname, r.rolsuper
