-- Large objects (pg_largeobject): logical replication does not carry them.
SELECT m.oid::bigint AS oid, pg_get_userbyid(m.lomowner) AS owner
FROM pg_largeobject_metadata m
ORDER BY m.oid
