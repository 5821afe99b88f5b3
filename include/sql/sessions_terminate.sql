-- End the open sessions of the given roles on this database (their open transactions roll back).
SELECT pid, usename AS role, pg_terminate_backend(pid) AS terminated
FROM pg_stat_activity
WHERE usename = ANY(%(roles)s) AND datname = current_database() AND pid <> pg_backend_pid()
