-- Each row of a small key range: its key as text and its hash, to name the keys that differ.
SELECT ({key_text}) AS key, {row_hash} AS hash
FROM {table} AS ferry_row
WHERE {predicate}
