-- Can this server subscribe (the old source, for the reverse replication)? A superuser, or on PostgreSQL 16 and
-- later a login that is not one (with pg_create_subscription: see privileges.sql); and worker headroom for one more
-- apply worker.
SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       current_user AS login,
       current_setting('max_logical_replication_workers')::int AS max_logical_replication_workers,
       (SELECT count(*) FROM pg_stat_subscription)::int AS workers_in_use,
       current_setting('server_version_num')::int AS server_version_num
