SELECT lo_get(%(oid)s::oid) AS data
