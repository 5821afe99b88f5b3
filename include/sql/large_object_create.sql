-- The same OID as on the source, so the application's references to it stay valid.
SELECT lo_from_bytea(%(oid)s::oid, %(data)s) AS oid
