-- The COPYs running in this database (a subscription's table synchronization copies with one), per table: rows and
-- bytes so far (pg_stat_progress_copy; a tablesync worker runs as the subscription's owner, so Ferry's login sees it)
-- and how long its transaction has run.
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified,
       p.tuples_processed AS rows_done, p.bytes_processed AS bytes_done,
       extract(epoch FROM clock_timestamp() - coalesce(a.xact_start, a.backend_start))::float8 AS elapsed_s
FROM pg_stat_progress_copy p
JOIN pg_class c ON c.oid = p.relid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_activity a ON a.pid = p.pid
WHERE p.datname = current_database()
