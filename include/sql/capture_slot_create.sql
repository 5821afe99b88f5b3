-- Start change capture: a logical decoding slot (test_decoding: on self-managed PostgreSQL and on RDS)
-- whose stream holds every row changed on this server from its consistent point on.
SELECT lsn::text AS lsn FROM pg_create_logical_replication_slot(%(slot_name)s, 'test_decoding')
