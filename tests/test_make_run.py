"""`make run` as a user meets it: the stack comes up in the foreground, a posting goes in and its
balance comes out, and Ctrl-C stops everything it started."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.waiting import wait_until
from tools.devstack.processes import free_port
from tools.devstack.stack import ROOT

pytestmark = pytest.mark.integration


def _descendants(pid: int) -> set[int]:
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _call(url: str, body: dict | None = None, token: str | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@pytest.fixture
def state_dir():
    """make run's state folder: in /tmp itself, so the postgres user can reach the cluster inside
    (pytest's own tmp_path sits below a 0700 folder), and removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="flow-make-run-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_make_run_serves_a_posting_and_ctrl_c_stops_everything(state_dir):
    tmp_path = state_dir
    ports = {name: free_port() for name in ("FLOW_DEV_PG_PORT", "FLOW_DEV_REPLICA_PORT", "FLOW_DEV_LOCALSTACK_PORT",
                                            "FLOW_INGEST_HTTP_PORT", "FLOW_QUERY_HTTP_PORT", "FLOW_ENGINE_HTTP_PORT",
                                            "FLOW_DEV_ISSUER_PORT")}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "FLOW_DEV_STATE_DIR": str(tmp_path)}
    log = open(tmp_path / "run.log", "w+")
    started: set[int] = set()
    proc = subprocess.Popen([sys.executable, "-m", "tools.devstack"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:

        def banner_written() -> bool:
            written = "Ctrl-C stops everything" in (tmp_path / "run.log").read_text()
            assert written or proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            return written

        wait_until(banner_written, "make run's banner", 120, interval=0.5,
                   describe=lambda _: (tmp_path / "run.log").read_text()[-3000:])
        banner = (tmp_path / "run.log").read_text()
        ingest, query = (f"http://127.0.0.1:{ports['FLOW_INGEST_HTTP_PORT']}",
                         f"http://127.0.0.1:{ports['FLOW_QUERY_HTTP_PORT']}")
        assert f"{ingest}/docs" in banner and "curl -s -X POST" in banner
        # The token the way the banner says: client credentials at the development issuer.
        issuer = re.search(r"TOKEN=\$\(curl -s -X POST (\S+)", banner).group(1)
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": "flow-dev",
                                       "client_secret": "flow-dev-secret", "scope": "flow.write flow.read"}).encode()
        with urllib.request.urlopen(urllib.request.Request(issuer, data=form), timeout=10) as response:
            token = json.load(response)["access_token"]
        with pytest.raises(urllib.error.HTTPError) as refused:
            _call(f"{ingest}/v1/transactions", {})
        assert refused.value.code == 401
        example = re.search(r"-d '(\{.*\})'", banner).group(1)
        accepted = _call(f"{ingest}/v1/transactions", json.loads(example), token)
        assert accepted["status"] == "accepted"

        def read_back() -> dict | None:
            try:
                return _call(f"{query}/v1/transactions/{accepted['id']}", token=token)
            except urllib.error.HTTPError as error:
                assert error.code == 404, error  # not applied yet, or not on the replica yet
                return None

        posted = wait_until(read_back, "the posting read back through query", 30)
        assert posted["status"] == "applied" and posted["amount"] == "150.25"
        balances = _call(f"{query}/v1/accounts/0001/000000001/balances", token=token)
        today = datetime.now(UTC).date().isoformat()
        assert [(b["dateref"], b["balance"]) for b in balances["items"]] == [(today, "150.25")]
        started = _descendants(proc.pid)
        assert len(started) >= 5  # postgres, LocalStack, ingest, engine, query (and their helpers)
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        proc.wait(90)
    assert proc.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
    left = [pid for pid in started if _alive(pid)]
    assert not left, f"still running after Ctrl-C: {left}"
    assert "devstack: stopped" in (tmp_path / "run.log").read_text()
