"""Operators of sequences: logical replication does not carry them, so the cutover sets them on the target."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from ferry.ledger import Action, Target
from ferry.operators.base import FerryOperator


class ReplicationSyncSequencesOperator(FerryOperator):
    """Set every sequence in scope on the target (owned or not, identity ones included) from the source.

    Each becomes the source's last value plus ``thresholds.sequence_gap``, never lower than the
    target's own value (so a re-run never moves one back). Then verifies that, on the target,
    every sequence-fed column's next value is above that column's maximum.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        schemas = plan.replication.schemas
        scope = {(t["schema"], t["table"]) for t in self.scope_table_rows(self.source)}
        changed = []
        for seq in self.source.get_sequences(schemas):
            if seq["owner_table"] is not None and (seq["schema"], seq["owner_table"]) not in scope:
                continue
            name = seq["qualified"]
            source_value = self.source.get_sequence_value(name)
            target_value = self.target.get_sequence_value(name)
            wanted = max((source_value or 0) + plan.thresholds.sequence_gap, target_value or 0)
            if source_value is None and target_value is None:
                self.log.info("%s: never used on either side; left as it is", name)
                continue
            if target_value == wanted:
                self.log.info("%s: already at %d", name, wanted)
                continue
            if self.would(context, Action.SET_SEQUENCE, Target.target(name), target_value, wanted):
                continue
            with self.changing(context, Action.SET_SEQUENCE, Target.target(name), target_value, wanted):
                self.target.set_sequence_value(name, wanted)
            changed.append(name)
            self.log.info("%s: source %s, target %s -> %d", name, source_value, target_value, wanted)
        if self.is_dry_run(context):
            return {"changed": []}
        problems = []
        for col in self.target.get_sequence_columns(schemas):
            maximum = self.target.column_max(col["table"], col["column"])
            current = self.target.get_sequence_value(col["sequence"])
            if maximum is not None and (current is None or current < maximum):
                problems.append(f"{col['table']}.{col['column']}: next value {(current or 0) + 1} <= max {maximum}")
        if problems:
            raise AirflowFailException("sequences behind their columns on the target: " + "; ".join(problems))
        self.log.info("%d sequence(s) set; every sequence-fed column's next value is above its maximum", len(changed))
        return {"changed": changed}
