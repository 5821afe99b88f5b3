"""The stand's application and its users: the same web app on each side, each through its side's real PgBouncer, and
users who follow DNS through the stand's Route53 with the record's TTL (stand.apps, stand.users)."""

from __future__ import annotations

import json
import os
import threading
import time

import httpx

from stand.services.pgbouncer import NewPgBouncer, PgBouncer
from stand.users import DnsUsers, route53_resolver
from tests.integration.conftest import aws

APP, OLD, NEW = "app.stand.example.com", "old-lb.stand.example.net", "new-lb.stand.example.net"


def app_url(stand, name: str) -> str:
    """Where the app ``name`` answers, as its Airflow connection says (the new app: the web pods' Service)."""
    conn = json.loads(os.environ[f"AIRFLOW_CONN_{name.upper()}"])
    return f"http://{conn['host']}:{conn['port']}"


def forget_signups(*conns) -> None:
    for conn in conns:
        conn.execute("DELETE FROM customers WHERE email LIKE 'signup-%@example.com'")


def test_each_app_signs_users_up_through_its_sides_pgbouncer_and_waits_out_a_pause(
    stand, source, target, target_schema, new_app_serving
):
    """The old app writes and reads on the source through the old side's PgBouncer, the new app on the target
    through the new side's. While the old side's PgBouncer is PAUSEd, a sign-up waits (no error) and is answered
    once it RESUMEs."""
    old, new = app_url(stand, "old_app"), app_url(stand, "new_app")
    try:
        made = httpx.post(f"{old}/customers", json={"name": "Ann"}, timeout=10)
        assert made.status_code == 201 and made.json()["app"] == "old_app", made.text
        customer = made.json()["id"]
        assert httpx.get(f"{old}/customers/{customer}", timeout=10).json()["name"] == "Ann"
        assert source.execute("SELECT name FROM customers WHERE id = %s", (customer,)).fetchone() == ("Ann",)

        made = httpx.post(f"{new}/customers", json={"name": "Bob"}, timeout=10)
        assert made.status_code == 201 and made.json()["app"] == "new_app", made.text
        assert target.execute("SELECT name FROM customers WHERE id = %s", (made.json()["id"],)).fetchone() == ("Bob",)
        # Each app reaches its database through its own pooler: the servers PgBouncer opened say so.
        for pooler in (PgBouncer(), NewPgBouncer()):
            with pooler.admin(stand) as admin:
                servers = admin.execute("SHOW SERVERS").fetchall()
            assert servers, f"{pooler.name} opened no server connection"

        answered: dict = {}

        def order_during_the_pause() -> None:
            began = time.monotonic()
            answered["response"] = httpx.post(f"{old}/customers", json={"name": "Cy"}, timeout=30)
            answered["waited_s"] = time.monotonic() - began

        with PgBouncer().admin(stand) as admin:
            admin.execute("PAUSE saas")
            try:
                waiting = threading.Thread(target=order_during_the_pause)
                waiting.start()
                time.sleep(1.5)
                assert "response" not in answered  # it waits in the pooler
            finally:
                admin.execute("RESUME saas")
            waiting.join(timeout=30)
        assert answered["response"].status_code == 201, answered["response"].text
        assert answered["waited_s"] >= 1.4
    finally:
        PgBouncer().reset(stand)
        forget_signups(source, target)


def test_users_follow_dns_within_the_records_ttl_and_none_fails(stand, source, target, target_schema, new_app_serving):
    """Users resolve the app's name through Route53 and keep each answer for its TTL: with the record at TTL 2, once it
    names the new side they all move to the new app within the TTL; every request is answered."""
    route53 = aws(stand, "route53")
    zone = route53.list_hosted_zones_by_name(DNSName="stand.example.com.")["HostedZones"][0]["Id"]

    def point(value: str, ttl: int) -> None:
        change = {"Name": APP, "Type": "CNAME", "TTL": ttl, "ResourceRecords": [{"Value": value}]}
        route53.change_resource_record_sets(
            HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": change}]}
        )

    users = DnsUsers(
        route53_resolver(APP),
        {OLD: ("old_app", app_url(stand, "old_app")), NEW: ("new_app", app_url(stand, "new_app"))},
        stand.dir / "users-test.csv",
        users=4,
        rate=20,
    )
    try:
        point(OLD, 2)
        users.start()
        time.sleep(3)
        switched = time.time()
        point(NEW, 2)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
            len(users.cache) == 4 and all(v == NEW for v, _ in users.cache.values())
        ):
            time.sleep(0.2)
        time.sleep(1)
    finally:
        users.stop.set()
        users.join(timeout=30)
        point(OLD, 3600)
        forget_signups(source, target)
    seen = users.summary()
    assert seen["requests"] > 40 and seen["failed"] == 0, seen
    served = seen["served"]
    assert set(served) == {"old_app", "new_app"}, served
    # Nobody was sent to the new app before the switch, and nobody stayed on the old one past the TTL (2 s, and
    # the request in flight).
    assert served["new_app"]["first"] >= switched
    assert served["old_app"]["last"] <= switched + 2 + 1, (served, switched)
    lines = (stand.dir / "users-test.csv").read_text().splitlines()
    assert lines[0] == "done,app,outcome,latency_ms" and len(lines) == seen["requests"] + 1
