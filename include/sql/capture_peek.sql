-- The captured changes of transactions committed before %(upto)s, without consuming them (the slot is
-- advanced only once what they name is stored). only_local '1': without the changes a subscription applied
-- (they carry a replication origin; they are the publisher's, counted there).
SELECT xid::text AS xid, data
FROM pg_logical_slot_peek_changes(%(slot_name)s, %(upto)s::pg_lsn, NULL,
                                  'include-xids', '1', 'skip-empty-xacts', '1', 'include-timestamp', '0',
                                  'only-local', %(only_local)s)
