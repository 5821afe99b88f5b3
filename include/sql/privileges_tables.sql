-- For each table (quoted, schema-qualified) and sequence of the given schemas: its owner, and whether Ferry's login
-- has its owner's privileges (a publication, a trigger on PostgreSQL 15, REFRESH, ALTER), may SET ROLE to the owner
-- (a subscription that is not run as its owner applies each table's rows as that table's owner), may read it and
-- may put a trigger on it; for a sequence, whether it may read and set its value.
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name,
       c.relkind::text AS kind,
       pg_get_userbyid(c.relowner) AS owner,
       pg_has_role(c.relowner, 'USAGE') AS owns,
       pg_has_role(c.relowner,
                   CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'SET' ELSE 'MEMBER' END)
           AS may_become_owner,
       CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'SELECT')
            ELSE has_table_privilege(c.oid, 'SELECT') END AS can_read,
       CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'UPDATE')
            ELSE has_table_privilege(c.oid, 'TRIGGER') END AS can_change
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE (quote_ident(n.nspname) || '.' || quote_ident(c.relname) = ANY(%(tables)s) AND c.relkind IN ('r', 'p', 'm'))
   OR (n.nspname = ANY(%(schemas)s) AND c.relkind = 'S')
ORDER BY 1
