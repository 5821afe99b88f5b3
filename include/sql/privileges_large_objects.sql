-- Large objects Ferry's login may not read (no superuser, lo_compat_privileges off, not its owner's privileges, no
-- SELECT grant to it, a role it has or PUBLIC), counted by owner; and every owner of a large object.
SELECT pg_get_userbyid(m.lomowner) AS owner,
       count(*) FILTER (
           WHERE NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
             AND NOT current_setting('lo_compat_privileges')::bool
             AND NOT pg_has_role(m.lomowner, 'USAGE')
             AND NOT EXISTS (SELECT 1 FROM aclexplode(m.lomacl) a
                             WHERE a.privilege_type = 'SELECT' AND (a.grantee = 0 OR pg_has_role(a.grantee, 'USAGE')))
       )::int AS unreadable,
       count(*)::int AS objects
FROM pg_largeobject_metadata m
GROUP BY m.lomowner
ORDER BY 1
