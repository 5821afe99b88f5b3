-- The ids of a table above a mark.
SELECT id FROM {table} WHERE id > {above}
