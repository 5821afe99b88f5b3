-- A sequence's position: the value the next nextval() builds on, and whether it was used.
SELECT last_value, is_called FROM {sequence}
