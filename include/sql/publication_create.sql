-- Partitions are published through their root: the target routes each row into its own partitions,
-- which may differ from the source's.
CREATE PUBLICATION {publication} FOR TABLE {tables} WITH (publish_via_partition_root = true)
