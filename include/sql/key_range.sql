-- Lowest and highest value of a single integer key, to cut key ranges arithmetically.
SELECT min({key})::bigint AS low, max({key})::bigint AS high FROM {table} AS ferry_row
