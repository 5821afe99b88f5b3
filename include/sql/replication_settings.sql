-- Logical replication prerequisites and headroom on a publisher.
SELECT current_setting('wal_level') AS wal_level,
       current_setting('max_replication_slots')::int AS max_replication_slots,
       (SELECT count(*) FROM pg_replication_slots)::int AS used_replication_slots,
       current_setting('max_wal_senders')::int AS max_wal_senders,
       (SELECT count(*) FROM pg_stat_replication)::int AS used_wal_senders,
       current_setting('max_slot_wal_keep_size') AS max_slot_wal_keep_size,
       current_setting('server_version_num')::int AS server_version_num
