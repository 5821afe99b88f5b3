-- Identical text forms of every value on both servers, whatever their defaults.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'iso_8601';
SET extra_float_digits = 3;
SET bytea_output = 'hex';
SET lc_monetary = 'C';
SET lc_numeric = 'C';
-- Ferry runs key ranges in parallel itself; parallel workers per range would oversubscribe the CPUs.
SET max_parallel_workers_per_gather = 0;
