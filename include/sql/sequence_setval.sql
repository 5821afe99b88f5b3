SELECT setval(%(sequence)s::regclass, %(value)s, true) AS value
