-- The key (as text) in the middle of a key range, to split it in two (ordered by the qualified key
-- columns, not by the selected text).
SELECT {key_text_list}
FROM {table} AS ferry_row
WHERE {predicate}
ORDER BY {key_order}
OFFSET %(offset)s LIMIT 1
