-- The largest value of a column, to check the sequence feeding it is past it.
SELECT max({column}) AS maximum FROM {table}
