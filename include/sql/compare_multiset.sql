-- A table without a key, as a multiset: each distinct row hash and how many times it occurs.
SELECT {row_hash} AS hash, count(*) AS copies
FROM {table} AS ferry_row
GROUP BY 1
