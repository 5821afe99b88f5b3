-- The WAL flushed so far: a drain reads up to here (never past what decoding can read).
SELECT pg_current_wal_flush_lsn()::text AS lsn
