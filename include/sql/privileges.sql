-- What Ferry's login may do on this server, for the pre-flight's privilege check: its attributes, the predefined
-- roles whose privileges it has (pg_has_role ... 'USAGE': membership that is inherited), the database's CREATE
-- right, and whether this session is encrypted. A role that does not exist on this version counts as not held.
SELECT r.rolname AS login,
       r.rolsuper AS superuser,
       r.rolreplication AS replication,
       current_setting('server_version_num')::int AS server_version_num,
       coalesce((SELECT s.ssl FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()), false) AS ssl,
       has_database_privilege(current_database(), 'CREATE') AS create_on_database,
       EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rdsadmin') AS on_rds,
       (SELECT coalesce(jsonb_object_agg(g.rolname, pg_has_role(current_user, g.oid, 'USAGE')), '{}'::jsonb)
        FROM pg_roles g
        WHERE g.rolname IN ('pg_create_subscription', 'pg_signal_backend', 'pg_read_all_stats', 'rds_replication',
                            'rds_superuser')) AS roles
FROM pg_roles r
WHERE r.rolname = current_user
