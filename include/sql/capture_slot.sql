-- The change capture slot: where it was last advanced to, whether it still keeps its WAL, what it keeps.
SELECT slot_name,
       plugin,
       active,
       wal_status,
       confirmed_flush_lsn::text AS confirmed_flush_lsn,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes
FROM pg_replication_slots
WHERE slot_name = %(slot_name)s AND database = current_database()
