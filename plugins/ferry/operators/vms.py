"""VM operators: stop the old side's services on D-day, and start them again on rollback."""

from __future__ import annotations

import shlex
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from ferry.hooks.vms import VmHook
from ferry.ledger import Action, Target
from ferry.operators.base import FerryOperator
from ferry.plan import VmHost


class _VmOperator(FerryOperator):
    def on_every_host(self, work: Any) -> list[Any]:
        hosts = self.plan.vms
        if not hosts:
            self.log.info("The plan names no VM")
            return []
        with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            futures = [pool.submit(work, host) for host in hosts]
        errors = [f"{h.name}: {f.exception()}" for h, f in zip(hosts, futures, strict=True) if f.exception()]
        if errors:
            raise AirflowFailException("; ".join(errors))
        return [f.result() for f in futures]

    def change(self, context: Any, host: VmHost, unit: str, action: str) -> None:
        """Run ``action`` (stop or start) on ``unit`` and verify the unit's state afterwards."""
        vm = VmHook(host.ssh_conn_id)
        command = (host.stop_command if action == "stop" else host.start_command).format(unit=shlex.quote(unit))
        wanted = action == "start"
        if vm.unit_active(host.status_command, unit) == wanted:
            self.log.info("%s: %s already %s", host.name, unit, "running" if wanted else "stopped")
            return
        kind, target = Action.START_UNIT if wanted else Action.STOP_UNIT, Target.vm(host.name, unit)
        if self.would(context, kind, target, {"active": not wanted}, {"active": wanted}):
            return
        with self.changing(context, kind, target, {"active": not wanted}, {"active": wanted}):
            status, out, err = vm.run(command)
            if status != 0:
                raise AirflowFailException(f"{unit}: `{command}` exited {status}: {err or out}")
            if vm.unit_active(host.status_command, unit) != wanted:
                raise AirflowFailException(f"{unit}: still {'stopped' if wanted else 'running'} after `{command}`")
        self.log.info("%s: %s %s", host.name, unit, "started" if wanted else "stopped")


class VmStopServicesOperator(_VmOperator):
    """Stop the plan's units on every VM (hosts in parallel, units in the plan's order), verified.

    Inverse: VmStartServicesOperator.
    """

    def execute(self, context: Any) -> list[str]:
        def stop(host: VmHost) -> str:
            for unit in host.units:
                self.change(context, host, unit, "stop")
            return host.name

        return self.on_every_host(stop)


class VmStartServicesOperator(_VmOperator):
    """Start again, in reverse order, the units Ferry stopped and has not started since (per the ledger), verified."""

    def stopped_units(self) -> set[Target]:
        """The units Ferry stopped and has not started since, per the ledger."""
        last: dict[Target, str] = {}
        for r in self.ledger.records():
            if r.action == Action.STOP_UNIT or (r.action == Action.START_UNIT and r.done):
                last[r.target] = r.action
        return {target for target, action in last.items() if action == Action.STOP_UNIT}

    def execute(self, context: Any) -> list[str]:
        stopped = self.stopped_units()

        def start(host: VmHost) -> str:
            for unit in reversed(host.units):
                if Target.vm(host.name, unit) in stopped:
                    self.change(context, host, unit, "start")
            return host.name

        return self.on_every_host(start)
