SELECT lo_unlink(m.oid) FROM pg_largeobject_metadata m WHERE m.oid = %(oid)s::oid
