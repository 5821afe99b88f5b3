-- The reverse replication's slot on the target (pgoutput, what a subscription streams from). Created in the
-- freeze, before the target takes its first application write: every write from then on reaches the old side.
SELECT lsn::text AS lsn FROM pg_create_logical_replication_slot(%(slot_name)s, 'pgoutput')
