ALTER PUBLICATION {publication} SET TABLE {tables};
ALTER PUBLICATION {publication} SET (publish_via_partition_root = true)
