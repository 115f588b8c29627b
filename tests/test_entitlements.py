"""Entitlements per client (FLOW_ENTITLEMENTS) and the access log, through the APIs.

Ingest and query run in-process (httpx's ASGI transport, their lifespan run by hand) on the test
stack's database and LocalStack, with entitlements of their own, and take tokens minted by the stack's
dev issuer for other clients than flow-dev ("partner-a" may post to and read branch 0001 only, at most
100.00 a posting). The stack's own services run without FLOW_ENTITLEMENTS, as before."""

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import ValidationError

from flow_kit.auth import AuthSettings
from flow_kit.entitlements import EntitlementSettings
from tools.devstack.stack import AUDIENCE

TODAY = datetime.now(UTC).date().isoformat()
ENTITLEMENTS = {"partner-a": {"branches": ["0001"], "maxAmount": "100.00"},
                "partner-all": {"branches": ["*"]}}


def body(**change) -> dict:
    return {"branch": "0001", "account": f"{uuid.uuid4().int % 10**9:09d}", "amount": "10.00", "debitcredit": "C",
            "eventcode": 1, "dateref": TODAY, "tracekey": str(uuid.uuid4()), **change}


def mint(stack, client: str, *scopes: str) -> str:
    return stack.issuer.mint(scopes or ("flow.read", "flow.write"), sub=f"{client}-sp", azp=client, client_id=client)


@asynccontextmanager
async def service(stack, name: str, entitlements: dict | None = ENTITLEMENTS):
    """`name` (ingest or query) in-process with the stack's settings and `entitlements`; an httpx client of it."""
    env = {k: v for k, v in stack.service_env(name).items() if k.startswith(("FLOW_", "AWS_"))}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # for the settings, and the AWS clients (the database secret is read at connect)
    try:
        if name == "ingest":
            from flow_ingest.app import create_app
            from flow_ingest.settings import IngestSettings as Settings
        else:
            from flow_query.app import create_app
            from flow_query.settings import QuerySettings as Settings
        auth = AuthSettings(enabled=True, issuer=stack.issuer.issuer, audience=[AUDIENCE],
                            discovery_url=stack.issuer.discovery_url)
        app = create_app(Settings(), auth, EntitlementSettings(entitlements=entitlements))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://flow",
                                         timeout=30) as client:
                yield client
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_the_setting_is_validated_strictly():
    assert EntitlementSettings().entitlements is None  # unset: no checks at all
    good = EntitlementSettings(entitlements=json.dumps({**ENTITLEMENTS, "default": {"branches": []}})).entitlements
    assert good.grant("partner-a").allows_branch("0001") and not good.grant("partner-a").allows_branch("0002")
    assert good.grant("someone-else").branches == ()
    assert EntitlementSettings(entitlements="{}").entitlements.grant("x").branches == ()  # no default: nothing
    for bad in ("{", "[]", '{"a": {"branches": "0001"}}', '{"a": {"branches": ["0001"], "maxAmount": 100}}',
                '{"a": {"branches": ["0001"], "maxAmount": "1e3"}}', '{"a": {"branches": ["0001"], "max": "1.00"}}',
                '{"a": {"branches": ["*", "0001"]}}', '{"a": {"branches": ["00-1"]}}', '{"a": {}}'):
        with pytest.raises(ValidationError):
            EntitlementSettings(entitlements=bad)


@pytest.mark.parametrize("service_name", ["ingest", "query"])
def test_a_bad_setting_stops_the_service_with_a_clear_message(service_name):
    env = {**os.environ, "FLOW_ENTITLEMENTS": '{"partner-a": {"branches": ["0001"], "maxAmount": 100}}',
           "FLOW_AUTH_ISSUER": "http://127.0.0.1:1", "FLOW_AUTH_AUDIENCE": AUDIENCE,
           f"FLOW_{service_name.upper()}_DATABASE_URL": "postgresql+asyncpg://u:p@127.0.0.1:1/flow",
           "FLOW_INGEST_REQUEST_TOPIC_ARN": "arn:aws:sns:us-east-1:000000000000:FlowRequest"}
    done = subprocess.run([sys.executable, "-m", f"flow_{service_name}"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr
    assert "FLOW_ENTITLEMENTS" in done.stderr and "maxAmount" in done.stderr


async def test_ingest_refuses_other_branches_r076_and_amounts_over_the_limit_r077(stack, requests_topic):
    async with service(stack, "ingest") as ingest:
        partner = {"authorization": f"Bearer {mint(stack, 'partner-a')}"}
        other_branch, too_much = body(branch="0002"), body(amount="100.01")
        answer = await ingest.post("/v1/transactions", json=other_branch, headers=partner)
        assert (answer.status_code, answer.json()["code"]) == (403, "R076"), answer.text
        answer = await ingest.post("/v1/transactions", json=too_much, headers=partner)
        assert (answer.status_code, answer.json()["code"]) == (422, "R077"), answer.text
        # In a batch each posting is judged on its own.
        fine, limit = body(), body(amount="100.00")
        batch = await ingest.post("/v1/transactions/batch", json={"items": [other_branch, fine, too_much, limit]},
                                  headers=partner)
        assert batch.status_code == 202, batch.text
        items = batch.json()["items"]
        assert [(i["status"], i["code"]) for i in items] == [("rejected", "R076"), ("accepted", None),
                                                              ("rejected", "R077"), ("accepted", None)]
        # Unlisted clients (no "default" entry) may post nothing; a client entitled to "*" anywhere.
        stranger = await ingest.post("/v1/transactions", json=body(),
                                     headers={"authorization": f"Bearer {mint(stack, 'stranger')}"})
        assert (stranger.status_code, stranger.json()["code"]) == (403, "R076")
        anywhere = body(branch="0009", amount="5000.00")
        answer = await ingest.post("/v1/transactions", json=anywhere,
                                   headers={"authorization": f"Bearer {mint(stack, 'partner-all')}"})
        assert answer.status_code == 202, answer.text
    seen = await requests_topic.collect({fine["tracekey"], limit["tracekey"], anywhere["tracekey"]}, timeout=60)
    await asyncio.sleep(2)  # time for a refused posting, had it been published, to arrive too
    while await requests_topic.poll():  # read everything that arrived
        pass
    seen = {m.get("tracekey") for m in requests_topic.messages}
    assert {fine["tracekey"], limit["tracekey"], anywhere["tracekey"]} <= seen
    assert other_branch["tracekey"] not in seen and too_much["tracekey"] not in seen  # refused: never published


async def test_without_the_setting_nothing_is_checked(stack):
    async with service(stack, "ingest", entitlements=None) as ingest:
        answer = await ingest.post("/v1/transactions", json=body(branch="0002", amount="5000.00"),
                                   headers={"authorization": f"Bearer {mint(stack, 'partner-a')}"})
        assert answer.status_code == 202, answer.text


async def test_query_refuses_accounts_r076_and_hides_postings_of_other_branches(stack, ingest_url, http, callbacks):
    mine, theirs = body(branch="0001"), body(branch="0002")
    for posting in (mine, theirs):  # through the stack's ingest (flow-dev, no entitlements)
        assert (await http.post(f"{ingest_url}/v1/transactions", json=posting)).status_code == 202
    await callbacks.collect({mine["tracekey"], theirs["tracekey"]}, timeout=60)
    stack.wait_for_replica()
    async with service(stack, "query") as query:
        partner = {"authorization": f"Bearer {mint(stack, 'partner-a', 'flow.read')}"}
        for what in ("statement", "balances", "balance"):
            answer = await query.get(f"/v1/accounts/0002/{theirs['account']}/{what}", headers=partner)
            assert (answer.status_code, answer.json()["code"]) == (403, "R076"), (what, answer.text)
            answer = await query.get(f"/v1/accounts/0001/{mine['account']}/{what}", headers=partner)
            assert answer.status_code == 200, (what, answer.text)
        ids = {}
        for posting in (mine, theirs):
            found = (await query.get("/v1/transactions", params={"tracekey": posting["tracekey"]},
                                     headers=partner)).json()["items"]
            ids[posting["branch"]] = found
        assert len(ids["0001"]) == 1 and ids["0002"] == []  # as for a tracekey nobody used
        everything = {"authorization": f"Bearer {mint(stack, 'partner-all', 'flow.read')}"}
        theirs_found = (await query.get("/v1/transactions", params={"tracekey": theirs["tracekey"]},
                                        headers=everything)).json()["items"]
        assert len(theirs_found) == 1
        answer = await query.get(f"/v1/transactions/{theirs_found[0]['id']}", headers=partner)
        assert (answer.status_code, answer.json()["code"]) == (404, "R040"), answer.text
        assert (await query.get(f"/v1/transactions/{theirs_found[0]['id']}", headers=everything)).status_code == 200
        assert (await query.get(f"/v1/transactions/{ids['0001'][0]['id']}", headers=partner)).status_code == 200


async def test_the_access_log_says_who_called_which_route_and_how_it_went_never_the_token(stack, caplog):
    token = mint(stack, "partner-a")
    tracekey = str(uuid.uuid4())
    caplog.set_level(logging.INFO, logger="flow.access")
    started = time.perf_counter()
    async with service(stack, "ingest") as ingest:
        await ingest.post("/v1/transactions", json=body(tracekey=tracekey),
                          headers={"authorization": f"Bearer {token}", "x-tracekey": tracekey})
        await ingest.post("/v1/transactions", json=body(branch="0002"), headers={"authorization": f"Bearer {token}"})
        await ingest.post("/v1/transactions", json=body(), headers={"authorization": "Bearer not-a-token"})
        await ingest.get("/healthz")
    async with service(stack, "query") as query:
        await query.get("/v1/accounts/0001/000000001/statement", headers={"authorization": f"Bearer {token}"})
    elapsed_ms = (time.perf_counter() - started) * 1000
    lines = [r for r in caplog.records if r.name == "flow.access"]
    got = [(r.sub, r.client, r.method, r.route, r.status) for r in lines]
    assert got == [("partner-a-sp", "partner-a", "POST", "/v1/transactions", 202),
                   ("partner-a-sp", "partner-a", "POST", "/v1/transactions", 403),
                   (None, None, "POST", "/v1/transactions", 401),
                   ("partner-a-sp", "partner-a", "GET", "/v1/accounts/{branch}/{account}/statement", 200)]
    assert [r.tracekey for r in lines] == [tracekey, None, None, None]
    # Each request's own time in milliseconds: some, and together no more than the test spent sending them.
    assert all(isinstance(r.duration_ms, float) and r.duration_ms > 0 for r in lines)
    assert sum(r.duration_ms for r in lines) <= elapsed_ms, ([r.duration_ms for r in lines], elapsed_ms)
    for record in lines:
        text = json.dumps(record.__dict__, default=str)
        assert token not in text and token.split(".")[2] not in text and "not-a-token" not in text
        assert "authorization" not in text.lower()
