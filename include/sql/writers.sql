-- Every login role that can write (INSERT, UPDATE, DELETE or TRUNCATE) one of the given tables
-- (quoted, schema-qualified), and where each right comes from: superuser; ownership, its own or a
-- role's it is a member of (an owner can drop the fence's trigger); membership in pg_write_all_data;
-- a grant to it, to a role it is a member of (SET ROLE reaches those), or to PUBLIC.
WITH scope AS (
    SELECT c.oid,
           quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS tbl,
           c.relowner,
           coalesce(c.relacl, acldefault('r', c.relowner)) AS acl
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE quote_ident(n.nspname) || '.' || quote_ident(c.relname) = ANY(%(tables)s)
),
logins AS (
    SELECT oid, rolname, rolsuper FROM pg_roles WHERE rolcanlogin
),
rights AS (
    SELECT l.rolname, s.tbl, 'superuser' AS via
    FROM logins l CROSS JOIN scope s
    WHERE l.rolsuper
    UNION ALL
    SELECT l.rolname, s.tbl,
           CASE WHEN l.oid = s.relowner THEN 'owner' ELSE 'owner through role ' || pg_get_userbyid(s.relowner) END
    FROM logins l JOIN scope s ON pg_has_role(l.oid, s.relowner, 'MEMBER')
    WHERE NOT l.rolsuper
    UNION ALL
    SELECT l.rolname, s.tbl, 'member of pg_write_all_data'
    FROM logins l CROSS JOIN scope s
    WHERE NOT l.rolsuper AND pg_has_role(l.oid, 'pg_write_all_data', 'MEMBER')
    UNION ALL
    SELECT l.rolname, s.tbl,
           CASE WHEN a.grantee = 0 THEN 'grant to PUBLIC'
                WHEN a.grantee = l.oid THEN 'grant'
                ELSE 'grant to role ' || pg_get_userbyid(a.grantee) END
    FROM scope s
    CROSS JOIN LATERAL aclexplode(s.acl) AS a
    JOIN logins l ON a.grantee = 0 OR pg_has_role(l.oid, a.grantee, 'MEMBER')
    WHERE a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
      AND NOT l.rolsuper
      AND NOT pg_has_role(l.oid, s.relowner, 'MEMBER')
)
SELECT rolname AS role,
       bool_or(via = 'superuser') AS superuser,
       bool_or(via LIKE 'owner%%') AS owner,
       array_agg(DISTINCT tbl ORDER BY tbl) AS tables,
       array_agg(DISTINCT via ORDER BY via) AS via
FROM rights
GROUP BY rolname
ORDER BY rolname
