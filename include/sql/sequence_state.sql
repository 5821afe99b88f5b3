-- A sequence's own state: pg_sequences shows no last_value for one not called yet (never used, or set with
-- setval(..., false)), whose next value is then last_value itself.
SELECT last_value, is_called FROM {sequence}
