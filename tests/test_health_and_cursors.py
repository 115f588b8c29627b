"""Security review findings 6a-6c: /readyz is cached and kept off the request pool; health and metrics
can be served on a port of their own, /docs switched off; statement cursors are signed and fully
checked before any query."""

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime

import httpx
import pytest
from fastapi import FastAPI

from tests.waiting import wait_until
from tools.devstack.processes import free_port

STATEMENT = "/v1/accounts/0001/000000001/statement"


def _unsigned(dateref: str, createdat: str, id: str) -> str:
    """A cursor in the unsigned format the API used to write (base64url JSON of the last line's key)."""
    raw = json.dumps([dateref, createdat, id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# --- 6c: cursors --------------------------------------------------------------------------------

def test_cursors_are_signed_and_only_our_own_are_accepted():
    from flow_kit.errors import FlowError
    from flow_query.cursor import START, CursorCodec

    codec, other = CursorCodec(b"k" * 32), CursorCodec(b"o" * 32)
    key = (date(2026, 1, 2), datetime(2026, 1, 2, 10, 0, 0, 123456, tzinfo=UTC), uuid.uuid4())
    cursor = codec.encode(*key)
    assert codec.decode(cursor) == key and codec.decode(None) == START
    flipped = cursor[:-1] + ("A" if cursor[-1] != "A" else "B")
    forged = [
        flipped, cursor + "x", "x" + cursor, other.encode(*key),
        _unsigned(key[0].isoformat(), key[1].isoformat(), str(key[2])),  # the old, unsigned format
        cursor.replace(".", ""), cursor.split(".")[0], "." + cursor.split(".")[1], "bm9wZQ", "..", "a.b.c",
    ]
    for bad in forged:
        with pytest.raises(FlowError) as caught:
            codec.decode(bad)
        assert (caught.value.code.value, caught.value.status_code) == ("R043", 422), bad


def test_a_signed_cursor_still_holds_only_a_usable_key():
    """Even with the key (a leaked one), a cursor whose content PostgreSQL could not take is R043."""
    from flow_kit.errors import FlowError
    from flow_query import cursor as module

    codec = module.CursorCodec(b"k" * 32)
    for payload in ([ "2026-01-01", "0001-01-01T00:00:00+05:00", str(uuid.uuid4())],  # before year 1 in UTC
                    ["2026-01-01", "2026-01-01T00:00:00", str(uuid.uuid4())],  # no time zone
                    ["2026-01-01", "9999-12-31T23:59:59-05:00", str(uuid.uuid4())],  # past year 9999 in UTC
                    ["2026-01-01", "2026-01-01T00:00:00+00:00"], "x", [1, 2, 3]):
        with pytest.raises(FlowError) as caught:
            codec.decode(codec.sign(json.dumps(payload).encode()))
        assert caught.value.code.value == "R043", payload


def test_without_a_key_setting_a_random_key_is_drawn():
    from flow_query.settings import QuerySettings

    url = "postgresql+asyncpg://u:p@127.0.0.1:1/flow"
    assert QuerySettings(database_url=url).cursor_key is None
    assert QuerySettings(database_url=url, cursor_key="s" * 32).cursor_key.get_secret_value() == "s" * 32
    from flow_query.cursor import CursorCodec

    assert CursorCodec.from_setting(None).key != CursorCodec.from_setting(None).key
    assert CursorCodec.from_setting(QuerySettings(database_url=url, cursor_key="s" * 32).cursor_key).key == b"s" * 32
    with pytest.raises(ValueError):
        QuerySettings(database_url=url, cursor_key="short")


def _query_connections(stack) -> set[str]:
    rows = stack.replica.query("SELECT pid || '@' || backend_start FROM pg_stat_activity "
                               "WHERE application_name = 'flow-query'")
    return set(rows.split())


CRAFTED = [
    _unsigned("2026-01-01", "0001-01-01T00:00:00+05:00", str(uuid.uuid4())),  # out of range once in UTC
    _unsigned("2026-01-01", "9999-12-31T23:59:59-05:00", str(uuid.uuid4())),
    _unsigned("2026-01-01", "2026-01-01T00:00:00", str(uuid.uuid4())),  # naive
    _unsigned("2026-01-01", "2026-01-01T00:00:00+00:00", str(uuid.uuid4())),  # well-formed but unsigned
    "bm9wZQ", "x" * 200,
]


async def test_crafted_cursors_get_r043_and_cost_no_database_connection(stack, query_url, http):
    for _ in range(3):  # a warm pool (sequential requests reuse the same connections)
        assert (await http.get(f"{query_url}{STATEMENT}")).status_code == 200
    before = _query_connections(stack)
    assert before
    for _ in range(3):
        for cursor in CRAFTED:
            response = await http.get(f"{query_url}{STATEMENT}", params={"cursor": cursor})
            assert response.status_code == 422, (cursor, response.status_code, response.text)
            assert response.json()["code"] == "R043"
    assert (await http.get(f"{query_url}{STATEMENT}")).status_code == 200
    assert _query_connections(stack) == before  # none thrown away, none opened


# --- 6a: /readyz cached, shared, off the request pool ------------------------------------------------

async def test_readiness_is_cached_and_concurrent_callers_share_one_check():
    from flow_kit.health import health_router

    calls = 0

    async def slow() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)

    app = FastAPI()
    app.include_router(health_router(lambda: {"db": slow}, cache_seconds=0.5))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        answers = await asyncio.gather(*[client.get("/readyz") for _ in range(20)])
        assert {a.status_code for a in answers} == {200} and calls == 1
        for _ in range(10):
            assert (await client.get("/readyz")).status_code == 200
        assert calls == 1
        await asyncio.sleep(0.6)
        assert (await client.get("/readyz")).status_code == 200
        assert calls == 2


async def test_a_failed_readiness_is_cached_too():
    from flow_kit.health import health_router

    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("down")

    app = FastAPI()
    app.include_router(health_router(lambda: {"db": broken}, cache_seconds=5))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for _ in range(5):
            answer = await client.get("/readyz")
            assert answer.status_code == 503 and answer.json()["checks"] == {"db": "unavailable"}
    assert calls == 1


def test_the_readiness_cache_is_a_setting():
    from flow_kit.settings import ServiceSettings

    assert ServiceSettings().health_cache_seconds == 5.0


async def test_readiness_checks_use_a_connection_of_their_own(stack, query_url):
    async with httpx.AsyncClient() as anonymous:
        for _ in range(5):
            assert (await anonymous.get(f"{query_url}/readyz")).json()["status"] == "ready"
    health = stack.replica.query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'flow-query-health'")
    assert health == "1"


# --- 6b: a health port of its own, /docs switch ------------------------------------------------------

def _health_app(settings):
    from flow_kit.health import mount_health
    from flow_kit.serve import asgi_app

    app = FastAPI()

    @app.get("/v1/thing")
    async def thing() -> dict:
        return {"ok": True}

    mount_health(app, settings, lambda: {})
    return asgi_app(app)


async def test_with_a_health_port_health_and_metrics_leave_the_api_port():
    from flow_kit.settings import ServiceSettings

    app = _health_app(ServiceSettings(http_port=8000, health_port=9000))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(f"http://127.0.0.1:9000{path}")).status_code == 200, path
            assert (await client.get(f"http://127.0.0.1:8000{path}")).status_code == 404, path
        assert (await client.get("http://127.0.0.1:8000/v1/thing")).status_code == 200
        assert (await client.get("http://127.0.0.1:9000/v1/thing")).status_code == 404
    app = _health_app(ServiceSettings(http_port=8000))  # unset: everything on the API port, as before
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        for path in ("/healthz", "/readyz", "/metrics", "/v1/thing"):
            assert (await client.get(f"http://127.0.0.1:8000{path}")).status_code == 200, path


def test_the_health_port_must_differ_from_the_api_port():
    from flow_kit.settings import ServiceSettings

    with pytest.raises(ValueError):
        ServiceSettings(http_port=8000, health_port=8000)


SERVE = """
import sys
from fastapi import FastAPI
from pydantic_settings import SettingsConfigDict
from flow_kit.health import mount_health
from flow_kit.serve import serve
from flow_kit.settings import ServiceSettings

class S(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FLOW_T_", extra="ignore", frozen=True)

def create_app(settings):
    app = FastAPI()
    mount_health(app, settings, lambda: {})
    return app

serve("flow-t", S, create_app)
"""


def test_a_service_serves_health_on_its_own_port_and_probes_it(tmp_path):
    api, health = free_port(), free_port()
    env = {**os.environ, "FLOW_T_HTTP_PORT": str(api), "FLOW_T_HEALTH_PORT": str(health)}
    script = tmp_path / "svc.py"
    script.write_text(SERVE)
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{health}/healthz", timeout=1).status_code, "the health port",
                   20, holds=lambda status: status == 200, interval=0.1, ignoring=httpx.HTTPError)
        assert httpx.get(f"http://127.0.0.1:{health}/metrics").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{api}/healthz").status_code == 404
        probe = subprocess.run([sys.executable, str(script), "health"], env=env, capture_output=True, timeout=20)
        assert probe.returncode == 0, probe.stderr
        probe = subprocess.run([sys.executable, str(script), "health"], timeout=20, capture_output=True,
                               env={**env, "FLOW_T_HEALTH_PORT": str(free_port())})
        assert probe.returncode == 1  # it asks the health port, not the API port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("service", ["ingest", "query"])
async def test_docs_can_be_switched_off(service):
    url = "postgresql+asyncpg://u:p@127.0.0.1:1/flow"
    if service == "query":
        from flow_query.app import create_app
        from flow_query.settings import QuerySettings as Settings
        extra = {}
    else:
        from flow_ingest.app import create_app
        from flow_ingest.settings import IngestSettings as Settings
        extra = {"request_topic_arn": "arn:aws:sns:us-east-1:000000000000:FlowRequest"}
    from flow_kit.auth import AuthSettings

    for docs, status in ((True, 200), (False, 404)):
        app = create_app(Settings(database_url=url, docs=docs, **extra), AuthSettings(enabled=False))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            for path in ("/docs", "/openapi.json", "/redoc"):
                assert (await client.get(path)).status_code == status, (path, docs)
