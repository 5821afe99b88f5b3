-- The highest id of a table (the rehearsal's mark: rows above it were written later).
SELECT max(id) AS max_id FROM {table}
