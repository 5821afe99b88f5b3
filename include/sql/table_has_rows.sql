-- Whether a table holds at least one row (reads one row at most).
SELECT EXISTS (SELECT 1 FROM {table}) AS has_rows
