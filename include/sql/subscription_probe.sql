-- The pre-flight's probe of the old source's own route to the target: the old source's server connects to the
-- publisher with the connection string D-day's reverse subscription will use (connect = true). Run in a
-- transaction that is rolled back, with no slot (slot_name = NONE): it leaves nothing on either side.
CREATE SUBSCRIPTION {subscription} CONNECTION {conninfo} PUBLICATION {publication}
    WITH (connect = true, enabled = false, create_slot = false, slot_name = NONE, copy_data = false)
