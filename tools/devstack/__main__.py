"""`make run`: the whole local stack in the foreground; Ctrl-C or SIGTERM stops all of it.
`python -m tools.devstack clean [--dry-run]` (`make clean`): stops and removes the PostgreSQL clusters
this clone left outside it; standard library only, so any Python 3.11 runs it, with or without .venv."""

import argparse
import logging
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from . import postgres

BANNER = """
FLOW is running{mode}.
  ingest   {ingest}/docs      POST /v1/transactions
  query    {query}/docs      GET  /v1/transactions/{{id}}, /v1/accounts/{{branch}}/{{account}}/statement|balances
  engine   {engine}/metrics
  postgres {db}
  replica  {replica} (hot standby; query reads from it)
  aws      {aws} (LocalStack: topics FlowRequest, FlowCallback; queue FlowTransaction)
  issuer   {issuer} (development OIDC issuer: client flow-dev, secret flow-dev-secret)

Get a bearer token (scopes flow.write flow.read flow.admin):
  TOKEN=$(curl -s -X POST {issuer}/token -d grant_type=client_credentials -d client_id=flow-dev \\
    -d client_secret=flow-dev-secret -d 'scope=flow.write flow.read flow.admin' \\
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

Try it:
  curl -s -X POST {ingest}/v1/transactions -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \\
    -d '{{"branch":"0001","account":"000000001","amount":"150.25","debitcredit":"C","eventcode":1,"dateref":"{today}","description":"first posting"}}'
  curl -s -H "authorization: Bearer $TOKEN" {query}/v1/transactions/<id from the answer>
  curl -s -H "authorization: Bearer $TOKEN" '{query}/v1/accounts/0001/000000001/balances'

Ctrl-C stops everything.
"""


def _int_env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _state_dir() -> Path:
    return Path(os.environ.get("FLOW_DEV_STATE_DIR") or postgres.ROOT / ".state" / "run")


def clean(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.devstack clean", description=(
        "Stop and remove the PostgreSQL clusters this clone made outside it: make run's, when the postgres "
        "user could not reach .state (kept in /var/tmp), and the throwaway ones of test and tool runs."))
    parser.add_argument("--dry-run", action="store_true", help="list them, touch nothing")
    args = parser.parse_args(argv)
    # make run's state folder as `make run` sees it, and the default one (the variable may be unset now).
    states = {_state_dir(), postgres.ROOT / ".state" / "run"}
    try:
        folders = postgres.clean(states, dry_run=args.dry_run)
    except (OSError, RuntimeError) as exc:  # a server that would not stop, a folder we may not remove
        print(f"devstack: clean failed: {exc}", file=sys.stderr)
        return 1
    for folder in folders:
        print(f"devstack: {'would remove' if args.dry_run else 'removed'} {folder}")
    return 0


def main() -> int:
    if sys.argv[1:2] == ["clean"]:
        return clean(sys.argv[2:])
    from .images import IMAGE_TAG  # the venv's packages: not needed to clean
    from .stack import Stack, StackConfig

    logging.basicConfig(level=logging.INFO, format="devstack: %(message)s")
    config = StackConfig(
        state_dir=_state_dir(),
        pg_port=_int_env("FLOW_DEV_PG_PORT", 5442),
        replica_port=_int_env("FLOW_DEV_REPLICA_PORT", 5443),
        localstack_port=_int_env("FLOW_DEV_LOCALSTACK_PORT", 4566),
        ingest_port=_int_env("FLOW_INGEST_HTTP_PORT", 8001),
        query_port=_int_env("FLOW_QUERY_HTTP_PORT", 8002),
        engine_port=_int_env("FLOW_ENGINE_HTTP_PORT", 8003),
        issuer_port=_int_env("FLOW_DEV_ISSUER_PORT", 8004),
        database_url=os.environ.get("FLOW_DEV_DATABASE_URL") or None,
        retroactive_days=_int_env("FLOW_RETROACTIVE_DAYS", 7),
        images=bool(os.environ.get("FLOW_DEV_IMAGES")),  # make run IMAGES=1
    )
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stack = Stack(config)
    try:
        stack.start()
    except Exception as exc:
        print(f"devstack: could not start: {exc}", file=sys.stderr)
        return 1
    mode = f" (services from the images flow-ingest, flow-engine, flow-query:{IMAGE_TAG})" if config.images else ""
    print(BANNER.format(mode=mode, ingest=f"http://127.0.0.1:{config.ingest_port}", query=f"http://127.0.0.1:{config.query_port}",
                        engine=f"http://127.0.0.1:{stack.health_ports.get('engine', config.engine_port)}", db=stack.database_url,
                        replica=stack.replica_url or "none (FLOW_DEV_DATABASE_URL is set)", issuer=stack.issuer.url,
                        aws=stack.aws_endpoint, today=datetime.now(UTC).date().isoformat()), flush=True)
    try:
        while not stopping:
            dead = [name for name, proc in {**stack.services, "engine": stack.engines[0]}.items() if proc.poll() is not None]
            if dead:
                print(f"devstack: {', '.join(dead)} stopped unexpectedly; stopping the stack", file=sys.stderr)
                break
            time.sleep(0.5)
    finally:
        print("devstack: stopping (ingest, then engine after the queue drains, query, LocalStack, "
              "the PostgreSQL replica, then the primary)", flush=True)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
        print("devstack: stopped", flush=True)
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())
