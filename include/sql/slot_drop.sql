-- Drop a replication slot left behind by a subscription dropped while the publisher was unreachable.
SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %(slot_name)s AND NOT active
