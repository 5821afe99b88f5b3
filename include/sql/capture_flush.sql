-- Flush the WAL of every transaction committed so far, so that a drain up to the flushed position sees
-- them all: asynchronous commits (a subscription's apply worker commits with synchronous_commit = off)
-- are visible before their WAL is flushed. A transaction that wrote WAL (here a logical decoding message,
-- which the drain skips) flushes the WAL up to its commit when synchronous_commit is on.
SET synchronous_commit = on;
SELECT pg_logical_emit_message(true, 'ferry_capture', 'drain');
