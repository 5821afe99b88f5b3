-- Row count and an order-independent content hash of one key range: a sum of 64-bit row hashes
-- (numeric, so it cannot overflow), which counts duplicates, unlike XOR.
SELECT count(*) AS rows, coalesce(sum({row_hash}), 0)::text AS hash
FROM {table} AS ferry_row
WHERE {predicate}
