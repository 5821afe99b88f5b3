-- Cannot run inside a transaction block: executed with autocommit. A subscription to a slot that already
-- exists (created where nothing could be missed), copying no row: the reverse replication.
CREATE SUBSCRIPTION {subscription} CONNECTION {conninfo} PUBLICATION {publication}
    WITH (copy_data = false, create_slot = false, slot_name = {slot_name})
