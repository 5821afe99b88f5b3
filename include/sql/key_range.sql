-- Lowest and highest value of an integer key column, to cut key ranges arithmetically.
SELECT min({key})::bigint AS low, max({key})::bigint AS high FROM {table} AS ferry_row
