-- Of the given roles, whether each exists and Ferry's login may SET ROLE to it (PostgreSQL 16 and later ask that
-- of ALTER LARGE OBJECT ... OWNER TO; MEMBER on earlier versions).
SELECT r AS role,
       g.oid IS NOT NULL AS exists,
       g.oid IS NOT NULL AND pg_has_role(current_user, g.oid,
           CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'SET' ELSE 'MEMBER' END) AS settable
FROM unnest(%(roles)s::text[]) AS r
LEFT JOIN pg_roles g ON g.rolname = r
ORDER BY 1
