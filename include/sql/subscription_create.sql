-- Cannot run inside a transaction block: executed with autocommit.
CREATE SUBSCRIPTION {subscription} CONNECTION {conninfo} PUBLICATION {publication}
    WITH (copy_data = true, slot_name = {slot_name})
