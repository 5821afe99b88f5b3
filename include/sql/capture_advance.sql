-- Consume the captured changes before %(upto)s: they are stored.
SELECT end_lsn::text AS lsn FROM pg_replication_slot_advance(%(slot_name)s, %(upto)s::pg_lsn)
