SELECT count(*) AS rows, '' AS hash FROM {table} AS ferry_row WHERE {predicate}
