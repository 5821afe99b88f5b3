-- The publisher's current WAL position.
SELECT pg_current_wal_lsn()::text AS lsn
