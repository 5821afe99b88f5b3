-- A logical replication slot on the publisher: lag of what the subscriber confirmed, WAL it retains.
SELECT slot_name,
       active,
       wal_status,
       confirmed_flush_lsn::text AS confirmed_flush_lsn,
       pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS lag_bytes,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes,
       safe_wal_size,
       CASE WHEN current_setting('max_slot_wal_keep_size') = '-1' THEN NULL
            ELSE pg_size_bytes(current_setting('max_slot_wal_keep_size')) END AS max_slot_wal_keep_bytes
FROM pg_replication_slots
WHERE slot_name = %(slot_name)s
