-- Every large object with the md5 of its contents, to copy what differs and verify the copy.
SELECT m.oid::bigint AS oid, pg_get_userbyid(m.lomowner) AS owner, md5(lo_get(m.oid)) AS md5
FROM pg_largeobject_metadata m
ORDER BY m.oid
