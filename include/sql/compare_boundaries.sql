-- Keys (as text) that split a table into ranges of about %(chunk_rows)s rows, read in key order.
SELECT {key_text_list}
FROM (SELECT {key_list}, row_number() OVER (ORDER BY {key_order}) AS ferry_n FROM {table} AS ferry_row) AS numbered
WHERE ferry_n %% %(chunk_rows)s = 0
ORDER BY {key_order}
