-- One pass over a table: the row count and content hash of each key range, the ranges cut at values of
-- the key's first column (width_bucket: 0 below the first cut, i from the i-th cut up to the next).
SELECT width_bucket({first}, %(cuts)s::text[]::{first_type}[]) AS bucket, count(*) AS rows, {hash_sum} AS hash
FROM {table} AS ferry_row
WHERE {predicate}
GROUP BY 1
