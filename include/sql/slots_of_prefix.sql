-- Replication slots whose name starts with the given prefix (Ferry's), with the WAL each keeps.
SELECT slot_name,
       slot_type,
       plugin,
       active,
       wal_status,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes
FROM pg_replication_slots
WHERE starts_with(slot_name, %(prefix)s) AND database IS NOT DISTINCT FROM current_database()
ORDER BY 1
