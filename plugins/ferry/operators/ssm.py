"""SSM Parameter Store operators: apply the plan's parameters for a phase, and restore them."""

from __future__ import annotations

import hashlib
from typing import Any

import jinja2
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.log import mask_secret

from ferry.hooks.ssm import SsmParameterHook, kms_key_exists
from ferry.ledger import Action, Target
from ferry.operators.base import FerryOperator


def fingerprint(value: str) -> str:
    """What the ledger keeps of a value: a short hash, never the value."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


class SsmApplyParametersOperator(FerryOperator):
    """Write the plan's SSM parameters for one phase (staging, production or cutover).

    Values are templates over the plan and Airflow connections (``{{ conn.rds_app.get_uri() }}``),
    rendered at run time and registered with the secret masker; the log shows names and versions,
    never values. Every template and the KMS key are checked before anything is written.
    Inverse: SsmRestoreParametersOperator for the same phase.

    :param phase: which of each parameter's values to apply.
    """

    template_fields = ("phase",)

    def __init__(self, *, phase: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.phase = phase

    def execute(self, context: Any) -> dict[str, Any]:
        ssm = self.plan.ssm
        chosen = [(i, p) for i, p in enumerate(ssm.parameters) if self.phase in p.values]
        if not chosen:
            self.log.info("No parameter has a %s value", self.phase)
            return {"changed": []}
        if any(p.secure for _, p in chosen) and not kms_key_exists(self.plan.aws.conn_id, ssm.kms_key_id):
            raise AirflowFailException(
                f"ssm.kms_key_id: KMS key {ssm.kms_key_id} does not exist in this account and region; nothing was written"
            )
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 - not HTML
        rendered, problems = {}, []
        for i, param in chosen:
            try:
                value = env.from_string(param.values[self.phase]).render(conn=context["conn"], plan=self.plan)
            except Exception as exc:  # noqa: BLE001 - every template problem is reported, then the task fails
                problems.append(f"ssm.parameters[{i}].values.{self.phase}: {type(exc).__name__}: {exc}")
                continue
            if param.secure:
                mask_secret(value)
                self.secrets.append(value)
            rendered[param.name] = value
        if problems:
            raise AirflowFailException("nothing was written; " + "; ".join(problems))
        hook = SsmParameterHook(aws_conn_id=self.plan.aws.conn_id)
        changed = []
        for _, param in chosen:
            value, wanted_type = rendered[param.name], "SecureString" if param.secure else "String"
            current = hook.get_parameter_state(param.name)
            if current and current["value"] == value and current["type"] == wanted_type:
                self.log.info("  %s: unchanged (version %s)", param.name, current["version"])
                continue
            before = None if current is None else {"version": current["version"], "type": current["type"]}
            target = Target.ssm(param.name)
            if self.would(context, Action.PUT_PARAMETER, target, before, {"phase": self.phase}):
                continue
            after = {"type": wanted_type, "phase": self.phase, "sha256": fingerprint(value)}
            with self.changing(context, Action.PUT_PARAMETER, target, before, after) as change:
                version = hook.put_parameter(param.name, value, param.secure, ssm.kms_key_id)
                change.after = after | {"version": version}
            self.log.info(
                "  %s: %s -> version %s (%s, value ***)",
                param.name,
                f"version {before['version']}" if before else "new",
                version,
                wanted_type,
            )
            changed.append(param.name)
        self.log.info("%d of %d parameter(s) written for phase %s", len(changed), len(chosen), self.phase)
        return {"changed": changed}


class SsmRestoreParametersOperator(FerryOperator):
    """Put each parameter back as it was before the phase was applied (inverse of SsmApplyParametersOperator).

    A parameter that did not exist before is deleted; one that did gets its earlier version's
    value written again.

    :param phase: the phase whose changes to undo.
    """

    template_fields = ("phase",)

    def __init__(self, *, phase: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.phase = phase

    def execute(self, context: Any) -> dict[str, Any]:
        hook = SsmParameterHook(aws_conn_id=self.plan.aws.conn_id)
        firsts: dict[str, Any] = {}
        deleted_at: dict[str, str] = {}
        for r in self.ledger.records():
            if r.action == Action.PUT_PARAMETER and r.after.get("phase") == self.phase:
                firsts.setdefault(r.target.name, r)
            elif r.action == Action.DELETE_PARAMETER and r.done:
                deleted_at[r.target.name] = r.at
        restored = []
        for name, first in firsts.items():
            current = hook.get_parameter_state(name)
            if current is None and deleted_at.get(name, "") > first.at:
                # Restoring an earlier phase deleted it after this phase wrote it: it is back further than asked.
                self.log.info("  %s: deleted since %s wrote it (an earlier phase was restored)", name, self.phase)
                continue
            if first.before is None:
                before = None if current is None else {"version": current["version"]}
                if current is not None and not self.would(context, Action.DELETE_PARAMETER, Target.ssm(name), before):
                    with self.changing(context, Action.DELETE_PARAMETER, Target.ssm(name), before, None):
                        hook.delete_parameter(name)
                    self.log.info("  %s: deleted (it did not exist before %s)", name, self.phase)
                    restored.append(name)
                continue
            old = hook.get_parameter_state(name, first.before["version"])
            if old is None:
                raise AirflowFailException(f"{name}: version {first.before['version']} is gone; restore it by hand")
            mask_secret(old["value"])
            if current and current["value"] == old["value"] and current["type"] == old["type"]:
                self.log.info("  %s: already as before (%s)", name, self.phase)
                continue
            if self.would(
                context, Action.RESTORE_PARAMETER, Target.ssm(name), None, {"version": first.before["version"]}
            ):
                continue
            key = self.plan.ssm.kms_key_id
            after = {"restored_from": first.before["version"], "sha256": fingerprint(old["value"])}
            before = {"version": current and current["version"]}
            with self.changing(context, Action.RESTORE_PARAMETER, Target.ssm(name), before, after) as change:
                version = hook.put_parameter(name, old["value"], old["type"] == "SecureString", key)
                change.after = after | {"version": version}
            self.log.info(
                "  %s: version %s written from version %s (value ***)", name, version, first.before["version"]
            )
            restored.append(name)
        return {"restored": restored}
