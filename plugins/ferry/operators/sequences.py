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

    :param direction: ``to_target`` (D-day) or ``to_source`` (a rollback after the cutover: the old source's
        sequences set past the target's, which took writes meanwhile).
    """

    def __init__(self, *, direction: str = "to_target", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if direction not in ("to_target", "to_source"):
            raise ValueError(f"direction must be to_target or to_source, not {direction!r}")
        self.sequences_direction = direction

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        schemas = plan.replication.schemas
        frm, to = (self.source, self.target) if self.sequences_direction == "to_target" else (self.target, self.source)
        scope = {(t["schema"], t["table"]) for t in self.scope_table_rows(frm)}
        on_target = {s["qualified"]: s for s in to.get_sequences(schemas)}
        before, wanted = {}, {}
        # What each sequence's columns hold on the side set from: rows may hold values its sequence never handed out
        # (ids given explicitly, rows that arrived by replication), and the other side must go past those too.
        fed: dict[str, int] = {}
        frm_columns = frm.get_sequence_columns(schemas)
        for col, maximum in zip(frm_columns, frm.column_maxima(frm_columns), strict=True):
            if maximum is not None:
                fed[col["sequence"]] = max(fed.get(col["sequence"], maximum), maximum)
        for seq in frm.get_sequences(schemas):
            if seq["owner_table"] is not None and (seq["schema"], seq["owner_table"]) not in scope:
                continue
            name, there = seq["qualified"], on_target.get(seq["qualified"])
            # Never called (never used, or setval(..., false)) reads as no last value: its state says more.
            source_value = frm.last_handed_out(seq)
            target_value = to.last_handed_out(there) if there is not None else None
            if source_value is None:
                raise AirflowFailException(
                    f"{name}: its value cannot be read on the {'source' if frm is self.source else 'target'} "
                    "(Ferry's login needs SELECT or USAGE on it: GRANT SELECT ON SEQUENCE ...)"
                )
            held = fed.get(name)
            if seq["last_value"] is None and there is not None and there["last_value"] is None:
                if target_value is not None and target_value >= max(source_value, held or source_value):
                    self.log.info("%s: not called yet on either side, the target's next value not behind", name)
                    continue
            floor = source_value + plan.thresholds.sequence_gap
            if held is not None and held > source_value and (target_value is None or target_value < held):
                # Rows the sequence never handed out (ids given explicitly, rows that arrived by replication from a
                # side whose sequence the other's is not yet past): the other side goes past those too.
                self.log.warning(
                    "%s: its columns hold %d on the %s, past the %d it handed out: set past those",
                    name,
                    held,
                    "source" if frm is self.source else "target",
                    source_value,
                )
                floor = max(floor, held + plan.thresholds.sequence_gap)
            value = max(floor, target_value or 0)
            if target_value == value:
                self.log.info("%s: already at %d", name, value)
                continue
            before[name], wanted[name] = target_value, value
            self.log.info("%s: source %s, target %s -> %d", name, source_value, target_value, value)
        # One change for them all: set in one transaction, inside the freeze.
        target = (
            Target.target(f"{plan.target.database}/sequences")
            if self.sequences_direction == "to_target"
            else Target.source(f"{plan.source.database}/sequences")
        )
        if wanted and not self.would(context, Action.SET_SEQUENCE, target, before, wanted):
            with self.changing(context, Action.SET_SEQUENCE, target, before, wanted):
                to.set_sequence_values(wanted)
        if self.is_dry_run(context):
            return {"changed": []}
        columns = to.get_sequence_columns(schemas)
        # The maxima first, the sequences after: the application may be writing there already (a re-run after the
        # cutover, the old app through its pooler), and a sequence read first would lag an id handed out since.
        maxima = to.column_maxima(columns)
        current = {s["qualified"]: to.last_handed_out(s) for s in to.get_sequences(schemas)}
        problems = [
            f"{col['table']}.{col['column']}: next value {(current.get(col['sequence']) or 0) + 1} <= max {maximum}"
            for col, maximum in zip(columns, maxima, strict=True)
            if maximum is not None and (current.get(col["sequence"]) is None or current[col["sequence"]] < maximum)
        ]
        if problems:
            raise AirflowFailException(
                f"sequences behind their columns on the {self.sequences_direction.removeprefix('to_')}: "
                + "; ".join(problems)
            )
        self.log.info("%d sequence(s) set; every sequence-fed column's next value is above its maximum", len(wanted))
        return {"changed": sorted(wanted)}
