DROP TRIGGER IF EXISTS ferry_fence ON {table}
