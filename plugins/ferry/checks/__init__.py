"""The pre-flight checks, by concern; ``ferry.preflight.CHECKS`` lists them in the order they run."""
