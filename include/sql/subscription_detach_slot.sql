-- After this, DROP SUBSCRIPTION does not contact the publisher; its slot must be dropped there later.
ALTER SUBSCRIPTION {subscription} SET (slot_name = NONE)
