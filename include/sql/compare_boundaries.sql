-- Keys (as text) that split a table into ranges of about %(chunk_rows)s rows, in key order (by the row
-- number: ordering by the key's name here would order by the selected text).
SELECT {key_text_list}
FROM (SELECT {key_list}, row_number() OVER (ORDER BY {key_order}) AS ferry_n FROM {table} AS ferry_row) AS numbered
WHERE ferry_n %% %(chunk_rows)s = 0
ORDER BY ferry_n
