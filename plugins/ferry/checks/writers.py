"""Pre-flight check of who can write: every role the fence must hold, and those it cannot."""

from __future__ import annotations

from ferry.checks.base import CheckResult, source_hook
from ferry.hooks.replication import fence_allowed_roles, fence_problems, fenced_tables, source_login
from ferry.plan import Plan, in_scope


def check_writers(plan: Plan) -> CheckResult:
    """Every login role that can write a table in scope, and where the right comes from: the fence holds
    them all but Ferry's own role and ``source.keep_writing``."""
    source = source_hook(plan)
    scope = [t["qualified"] for t in in_scope(plan, source.get_tables(plan.replication.schemas))]
    writers = source.get_writers(fenced_tables(plan, source, scope))
    allowed, kept, listed = fence_allowed_roles(plan), plan.source.keep_writing, plan.source.app_roles
    findings = []
    for w in writers:
        if w["role"] in kept:
            fate = "source.keep_writing: NOT fenced, its writes after the cutover stay on the old side"
        elif w["role"] in allowed:
            fate = "Ferry's own role: not fenced"
        elif w["superuser"] and w["role"] in plan.source.provider_superusers:
            fate = "the managed service's own superuser (source.provider_superusers): no client of yours logs in as it"
        else:
            fate = "held by the fence" + ("" if w["role"] in listed else " (not in source.app_roles)")
        findings.append(f"{w['role']}: can write {len(w['tables'])} table(s) in scope ({'; '.join(w['via'])}); {fate}")
    login = source_login(plan)
    sharing = [r for r in (*listed, *kept) if r == login]
    problems = (
        [
            f"role {r} named in the plan (source.app_roles or source.keep_writing) does not exist on the source"
            for r in source.missing_roles([*listed, *kept])
        ]
        + [
            f"{login} is Ferry's own login (connection {plan.source.conn_id}) and is named in source.app_roles or "
            "source.keep_writing: the fence lets Ferry's login write, so the application's writes under it would "
            "pass the fence after the freeze's comparison and be lost at the cutover. Give the application a login "
            "of its own (CREATE ROLE ... LOGIN; GRANT its rights), or Ferry one (a new connection)"
            for _ in sharing[:1]
        ]
        + fence_problems(writers, allowed, plan.source.provider_superusers)
    )
    shared = source.sessions_sharing_login()
    findings += [
        f"session pid {s['pid']} logs in as Ferry's own login {login} but is not Ferry's (application_name "
        f"{s['application_name']!r}, from {s['client_addr'] or 'a local socket'}, since {s['backend_start']}): its "
        "writes pass the fence; the fence ends it, and a client that shares the login must stop before D-day"
        for s in shared
    ]
    if problems:
        return CheckResult(
            "writers",
            "fail",
            f"the fence cannot hold {len(problems)} role(s)",
            findings + problems,
            "Fix each role as its finding says (NOSUPERUSER, ownership to Ferry's role) or correct the plan's role "
            "names; a role the fence cannot hold would go on writing to the old side after the cutover.",
        )
    held = [w["role"] for w in writers if w["role"] not in allowed and not w["superuser"]]
    if shared:
        return CheckResult(
            "writers",
            "warn",
            f"{len(shared)} session(s) share Ferry's own login {login} without being Ferry's",
            findings,
            "Find each client in pg_stat_activity (pid, client address) and give it a login of its own: what it "
            "writes passes the fence. The fence ends those sessions; one that comes back after it is caught by the "
            "last check before the cutover, which stops D-day.",
        )
    if kept:
        return CheckResult(
            "writers",
            "warn",
            f"{', '.join(kept)} keep writing after the fence (source.keep_writing); the fence holds {len(held)} role(s)",
            findings,
            "What a source.keep_writing role writes after the cutover stays on the old side and is lost to the new "
            "one; remove it from keep_writing unless that is intended.",
        )
    return CheckResult(
        "writers",
        "pass",
        f"the fence holds every role that can write a table in scope: {', '.join(held) or 'none'}",
        findings,
    )
