-- A sample of the values of a key's first column, in the order the key ranges use, to cut the ranges
-- (a few pages of the table, not all of it).
SELECT ({first})::text AS cut
FROM {table} AS ferry_row TABLESAMPLE SYSTEM (%(percent)s) REPEATABLE (0)
ORDER BY {first}
