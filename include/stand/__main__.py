"""Drive the stand: ``python -m stand up|down|env|status|load start|stop|stats``."""

from __future__ import annotations

import argparse
import json
import sys

from stand.control import UNITS, down, load, load_stats, unit, up
from stand.core import Stand
from stand.services import SERVICES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stand", description="The Ferry local stand (loopback only).")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start every service and seed the source (idempotent)")
    p_up.add_argument("--rows", type=int, help="rows of sample data in all (default $FERRY_STAND_ROWS or 1,000,000)")
    sub.add_parser("down", help="stop every service and remove the stand's folder")
    sub.add_parser("env", help="print the env file's path and the variables it sets")
    sub.add_parser("status", help="say which services are up")
    p_unit = sub.add_parser("unit", help="the stand VM's units, as systemctl would drive them (over its sshd)")
    p_unit.add_argument("action", choices=["start", "stop", "status"])
    p_unit.add_argument("unit", choices=sorted(UNITS))
    p_load = sub.add_parser("load", help="start or stop the write load")
    p_load.add_argument("action", choices=["start", "stop", "stats"])
    p_load.add_argument("--rate", type=float, default=50, help="operations per second (default 50)")
    args = parser.parse_args(argv)
    stand = Stand()
    if getattr(args, "rows", None):
        stand.rows = args.rows
    if args.command == "up":
        up(stand)
    elif args.command == "down":
        down(stand)
    elif args.command == "env":
        if not stand.env_file.exists():
            print("the stand is not up: run make stand-up", file=sys.stderr)
            return 1
        names = [line.split("=", 1)[0].removeprefix("export ") for line in stand.env_file.read_text().splitlines()]
        print(f"# load it with: set -a; . {stand.env_file}; set +a\n# it sets: {' '.join(names)}")
    elif args.command == "unit":
        return unit(stand, args.action, args.unit)
    elif args.command == "status":
        for service in SERVICES:
            print(f"{service.name}: {'up' if stand.dir.exists() and service.healthy(stand) else 'down'}")
        print(f"load: {'running' if stand.dir.exists() and stand.process_alive('load') else 'stopped'}")
        return 0 if stand.dir.exists() and all(s.healthy(stand) for s in SERVICES) else 1
    elif args.action == "stats":
        print(json.dumps(load_stats(stand)))
    else:
        load(stand, args.action, args.rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
