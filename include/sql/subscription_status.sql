-- A subscription on the subscriber: enabled, apply worker running, errors, positions.
SELECT s.subname AS subscription,
       s.subenabled AS enabled,
       s.subslotname AS slot_name,
       w.pid AS worker_pid,
       w.received_lsn::text AS received_lsn,
       w.latest_end_lsn::text AS latest_end_lsn,
       coalesce(st.apply_error_count, 0) AS apply_error_count,
       coalesce(st.sync_error_count, 0) AS sync_error_count,
       (SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid AND r.srsubstate <> 'r')::int
           AS tables_not_ready
FROM pg_subscription s
LEFT JOIN pg_stat_subscription w ON w.subid = s.oid AND w.relid IS NULL
LEFT JOIN pg_stat_subscription_stats st ON st.subid = s.oid
WHERE s.subname = %(subscription)s
  AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
