-- Has the subscriber confirmed everything up to the fence? (confirmed_flush_lsn is what it reported applied)
SELECT confirmed_flush_lsn::text AS confirmed_flush_lsn,
       confirmed_flush_lsn >= %(fence_lsn)s::pg_lsn AS caught_up,
       pg_wal_lsn_diff(%(fence_lsn)s::pg_lsn, confirmed_flush_lsn)::bigint AS behind_bytes
FROM pg_replication_slots
WHERE slot_name = %(slot_name)s
