-- A table without a key: each distinct hash, and its copies, of the rows whose columns' text is one of
-- the given rows' (the rows the change capture saw change). {prefilter} is a cheap superset of them (one
-- column's values, compared natively: an index on it is used, and a scan skips the text of every other row).
SELECT {row_hash} AS hash, count(*) AS copies
FROM {table} AS ferry_row
WHERE {prefilter}
  AND ROW({row_text})::text IN (SELECT ROW(u.*)::text FROM unnest({arrays}) AS u)
GROUP BY 1
