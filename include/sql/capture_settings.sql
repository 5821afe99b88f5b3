-- What change capture needs on a server: logical WAL, a free replication slot, and a login allowed to
-- decode (superuser, REPLICATION, or on RDS (where rdsadmin exists) the rds_replication role; stock PostgreSQL
-- inherits no role attribute, so there a membership in a role with REPLICATION does not count).
SELECT current_setting('wal_level') AS wal_level,
       current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots)::int AS free_slots,
       current_user AS login,
       (r.rolsuper OR r.rolreplication OR (
           EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rdsadmin')
           AND EXISTS (SELECT 1 FROM pg_roles g
                       WHERE g.rolname = 'rds_replication' AND pg_has_role(current_user, g.oid, 'member'))
       )) AS can_decode,
       EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %(slot_name)s) AS slot_exists
FROM pg_roles r
WHERE r.rolname = current_user
