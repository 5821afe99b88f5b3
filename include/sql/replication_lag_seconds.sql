-- How far behind, in seconds, a subscriber is: its WAL sender's lag on this publisher (NULL columns once it is idle
-- and caught up: 0). The subscription's name is its WAL sender's application_name.
SELECT extract(epoch FROM coalesce(replay_lag, flush_lag, write_lag, '0'::interval))::float8 AS lag_s
FROM pg_stat_replication
WHERE application_name = %(application_name)s
LIMIT 1
