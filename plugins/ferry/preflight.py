"""Pre-flight checks: read everything, change nothing, and say what to do about each problem.

Each check is a function of the plan that returns a :class:`CheckResult`. ``fail`` blocks the
migration (NO-GO); ``warn`` is reported but does not block; ``skip`` means not applicable yet.
The checks live in ``ferry.checks`` by concern; this is their registry, in the order they run.
"""

from __future__ import annotations

from collections.abc import Callable

from ferry.checks.base import CheckResult, Status
from ferry.checks.connectivity import (
    check_change_capture,
    check_connections,
    check_leftover_slots,
    check_replication_health,
    check_reverse_replication,
    check_source_replication_settings,
)
from ferry.checks.coverage import check_extensions, check_not_replicated, extension_findings
from ferry.checks.plan_sections import check_plan_sections
from ferry.checks.privileges import check_privileges
from ferry.checks.schema import check_replica_identity, check_schema_drift, check_sequences
from ferry.checks.writers import check_writers

__all__ = [
    "CHECKS",
    "CheckResult",
    "Status",
    "check_change_capture",
    "check_connections",
    "check_extensions",
    "check_leftover_slots",
    "check_not_replicated",
    "check_plan_sections",
    "check_privileges",
    "check_replica_identity",
    "check_replication_health",
    "check_reverse_replication",
    "check_schema_drift",
    "check_sequences",
    "check_source_replication_settings",
    "check_writers",
    "extension_findings",
]

CHECKS: dict[str, Callable[..., CheckResult]] = {
    "plan_sections": check_plan_sections,  # also given the stage it runs in
    "connections": check_connections,
    "source_replication_settings": check_source_replication_settings,
    "privileges": check_privileges,
    "replica_identity": check_replica_identity,
    "writers": check_writers,
    "not_replicated": check_not_replicated,
    "extensions": check_extensions,
    "schema_drift": check_schema_drift,
    "replication_health": check_replication_health,
    "leftover_slots": check_leftover_slots,
    "change_capture": check_change_capture,
    "reverse_replication": check_reverse_replication,
    "sequences": check_sequences,
}
