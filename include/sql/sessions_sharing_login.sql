-- Sessions of this connection's login on this database that are not Ferry's: another client sharing Ferry's
-- login (the application, a cron job, a DBA's script), whose writes would pass the fence. Ferry's own sessions
-- name themselves 'ferry...' (application_name); replication connections (a subscription's walsender) are not
-- client backends. With terminate, each is ended (its open transaction rolls back).
SELECT pid,
       application_name,
       host(client_addr) AS client_addr,
       backend_start::text AS backend_start,
       state,
       CASE WHEN %(terminate)s THEN pg_terminate_backend(pid) END AS terminated
FROM pg_stat_activity
WHERE usename = session_user
  AND datname = current_database()
  AND backend_type = 'client backend'
  AND pid <> pg_backend_pid()
  AND application_name NOT LIKE 'ferry%%'
ORDER BY backend_start
