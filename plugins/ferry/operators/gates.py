"""The human gates of the stage DAGs: Airflow's ApprovalOperator, timed for the report."""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

from ferry.operators.base import Timed

DRY_RUN_PREFIX = "{{ 'DRY RUN (nothing is changed): ' if params.dry_run else '' }}"


class FerryApprovalOperator(Timed, ApprovalOperator):
    """A go/no-go question to the operator (Airflow's Required Actions); Reject fails the task and stops the stage.

    On a dry run the question says so.

    :param subject: the question.
    :param body: what the operator should read before answering, and what happens next.
    """

    def __init__(self, *, subject: str, body: str, **kwargs: Any) -> None:
        kwargs.setdefault("fail_on_reject", True)
        kwargs.setdefault("retries", 0)
        kwargs.setdefault("doc_md", f"Human gate: {subject} Approve to go on; Reject stops the stage.")
        super().__init__(subject=DRY_RUN_PREFIX + subject, body=body, **kwargs)
