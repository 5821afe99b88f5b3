"""D-day's end of the write freeze with a switch at the pooler: one task, so no scheduling gap lengthens the users'
pause."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ferry.operators.pooler import PoolerSteps
from ferry.operators.replication import ReplicationPromoteTargetOperator
from ferry.operators.reverse import ReplicationStartReverseOperator


class ReplicationPromoteAtPoolerOperator(
    ReplicationPromoteTargetOperator, ReplicationStartReverseOperator, PoolerSteps
):
    """With ``source.pooler``, the end of the freeze and of the users' pause in one task:

    1. the promotion (ReplicationPromoteTargetOperator: the last check, the subscription dropped, the sequences set);
    2. the reverse replication's publication and slot on the target (from here every write the target takes is kept
       for the old source);
    3. the old side's PgBouncer pointed at the target and resumed: the old app's waiting queries go on, on the new
       database (PoolerSteps);
    4. then the reverse subscription on the old source (it streams from the slot, losing nothing meanwhile).

    Each step is its own change in the ledger, with its inverse, and a re-run does only what is left. Each boundary
    between tasks would cost the waiting users 0.3 to 0.6 s. ``start_reverse_replication`` after it waits until the
    reverse replication streams.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        # The SSH connection the repoint needs, opened beside the promotion: its handshake is not in the pause.
        pool = ThreadPoolExecutor(max_workers=1)
        ssh = pool.submit(self.pooler.connect_vm)
        try:
            promoted = ReplicationPromoteTargetOperator.execute(self, context)
            captured = self.create_reverse_capture(context)
            try:
                ssh.result()
            except Exception as err:  # noqa: BLE001 (the repoint opens its own, and says why it fails)
                self.log.warning("Could not open the SSH connection ahead (%s): the repoint opens its own", type(err))
            moved = self.point_pooler(context, "target")
        finally:
            pool.shutdown(wait=True)
            self.pooler.close()
        resumed_at = self.resume_pooler(context)
        subscribed = self.subscribe_reverse(context)
        return promoted | {"reverse": captured + subscribed, "pooler_repointed": moved, "pooler_resumed_at": resumed_at}
