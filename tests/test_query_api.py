"""The query API as a client sees it: transactions by id and tracekey, paginated statements with
running balances, daily and point-in-time balances, and error codes."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from pydantic import TypeAdapter

from flow_kit.migrations import asyncpg_dsn
from flow_query.queries import utc_text
from flow_query.schemas import BalanceAt, Statement, TransactionOut
from tests.conftest import aws_session
from tests.statements import assert_running_balances
from tests.waiting import wait_until_async

TODAY = datetime.now(UTC).date()


def assert_written_as_the_model(model, response) -> None:
    """The answer is byte for byte what FastAPI would write from the response model (the service
    writes some answers itself, partly in SQL, to spare the model's cost)."""
    assert response.status_code == 200, response.text
    data = response.json()
    if "from" in data:  # the field is from_, written as "from"
        data["from_"] = data.pop("from")
    assert model.model_validate(data).model_dump_json(by_alias=True).encode() == response.content
    assert response.headers["content-type"] == "application/json"


def body(**change) -> dict:
    return {"branch": "0004", "account": "000000001", "amount": "10.00", "debitcredit": "C", "eventcode": 1,
            "dateref": TODAY.isoformat(), "tracekey": str(uuid.uuid4()), **change}


async def test_a_posting_is_read_back_by_id_and_by_tracekey_applied_or_rejected(stack, ingest_url, query_url, http,
                                                                                callbacks):
    tracekey = str(uuid.uuid4())
    applied = (await http.post(f"{ingest_url}/v1/transactions", json=body(tracekey=tracekey))).json()
    # A posting ingest accepted but the engine must refuse (the catalogue changed in between): event 2
    # takes no credits. Published the way ingest publishes.
    rejected = {**body(tracekey=tracekey, eventcode=2), "id": str(uuid.uuid4()), "acceptedat": datetime.now(UTC).isoformat()}
    session = aws_session()
    async with session.client("sns", endpoint_url=stack.aws_endpoint) as sns:
        await sns.publish(TopicArn=stack.outputs["RequestTopicArn"], Message=json.dumps(rejected))

    async def reported() -> int:
        await callbacks.poll()
        return sum(m.get("tracekey") == tracekey for m in callbacks.messages)

    await wait_until_async(reported, "both postings' callbacks", 60, holds=lambda n: n >= 2, interval=0)
    one = (await http.get(f"{query_url}/v1/transactions/{applied['id']}")).json()
    assert one["status"] == "applied" and one["amount"] == "10.00" and one["tracekey"] == tracekey
    two = (await http.get(f"{query_url}/v1/transactions/{rejected['id']}")).json()
    assert (two["status"], two["code"], two["amount"]) == ("rejected", "R023", None)
    both = (await http.get(f"{query_url}/v1/transactions", params={"tracekey": tracekey})).json()["items"]
    assert sorted((t["id"], t["status"]) for t in both) == sorted([(applied["id"], "applied"), (rejected["id"], "rejected")])


async def test_a_statement_pages_with_a_cursor_and_running_balances(ingest_url, query_url, http, callbacks):
    account = f"{uuid.uuid4().int % 10**9:09d}"
    items = [body(account=account, amount=f"{n + 1}.00", debitcredit="CD"[n % 3 == 0],
                  dateref=(TODAY - timedelta(days=n % 5)).isoformat()) for n in range(250)]
    answer = (await http.post(f"{ingest_url}/v1/transactions/batch", json={"items": items})).json()
    assert answer["accepted"] == 250
    await callbacks.collect({i["tracekey"] for i in items}, timeout=120)
    lines, cursor, pages = [], None, 0
    window = {"from": (TODAY - timedelta(days=3)).isoformat(), "to": TODAY.isoformat(), "limit": 100}
    while True:
        response = await http.get(f"{query_url}/v1/accounts/0004/{account}/statement",
                                  params={**window, **({"cursor": cursor} if cursor else {})})
        assert_written_as_the_model(Statement, response)
        page = response.json()
        pages += 1
        lines += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    in_window = [i for i in items if i["dateref"] >= window["from"]]
    assert pages == -(-len(in_window) // 100) and len(lines) == len(in_window)
    assert sorted(line["id"] for line in lines) == sorted(a["id"] for a in answer["items"] if a["index"] in
                                                          {n for n, i in enumerate(items) if i["dateref"] >= window["from"]})
    # The opening balance is every posting before the window; each line moves the balance by its amount.
    before = sum(Decimal(i["amount"]) * (1 if i["debitcredit"] == "C" else -1) for i in items if i["dateref"] < window["from"])
    assert Decimal(page["opening_balance"]) == before
    running = assert_running_balances(page, lines)
    response = await http.get(f"{query_url}/v1/accounts/0004/{account}/balance", params={"date": TODAY.isoformat()})
    assert_written_as_the_model(BalanceAt, response)
    at = response.json()
    assert Decimal(at["balance"]) == running and at["lastmovement"] == TODAY.isoformat()
    response = await http.get(f"{query_url}/v1/transactions/{lines[0]['id']}")
    assert_written_as_the_model(TransactionOut, response)
    yesterday = (TODAY - timedelta(days=1)).isoformat()
    at = (await http.get(f"{query_url}/v1/accounts/0004/{account}/balance", params={"date": yesterday})).json()
    assert Decimal(at["balance"]) == running - sum(
        Decimal(i["amount"]) * (1 if i["debitcredit"] == "C" else -1) for i in items if i["dateref"] == TODAY.isoformat())


async def test_an_unknown_account_has_zero_balances_and_an_empty_statement(query_url, http):
    statement = (await http.get(f"{query_url}/v1/accounts/0004/NOSUCH/statement")).json()
    assert (statement["items"], statement["opening_balance"], statement["closing_balance"], statement["next_cursor"]) == \
        ([], "0.00", "0.00", None)
    at = (await http.get(f"{query_url}/v1/accounts/0004/NOSUCH/balance")).json()
    assert (at["balance"], at["lastmovement"]) == ("0.00", None)


@pytest.mark.parametrize(("path", "status", "code"), [
    (f"/v1/transactions/{uuid.uuid4()}", 404, "R040"),
    ("/v1/transactions/not-a-uuid", 422, "R011"),
    ("/v1/transactions?tracekey=nope", 422, "R009"),
    ("/v1/accounts/0001/000000001/statement?from=2026-01-10&to=2026-01-01", 422, "R041"),
    ("/v1/accounts/0001/000000001/balances?from=2020-01-01&to=2026-01-01", 422, "R041"),
    ("/v1/accounts/0001/000000001/balances?from=someday", 422, "R041"),
    ("/v1/accounts/0001/000000001/balance?date=someday", 422, "R041"),
    ("/v1/accounts/00-1/000000001/statement", 422, "R002"),
    ("/v1/accounts/0001/0000%2000001/balances", 422, "R003"),
    ("/v1/accounts/0001/000000001/statement?cursor=bm9wZQ", 422, "R043"),
    ("/v1/accounts/0001/000000001/statement?limit=0", 422, "R044"),
    ("/v1/events/2000000000", 404, "R020"),
])
async def test_query_errors_carry_their_code(query_url, http, path, status, code):
    response = await http.get(f"{query_url}{path}")
    assert response.status_code == status and response.json()["code"] == code


async def test_health_readiness_and_metrics_need_no_token(query_url, stack):
    import httpx

    async with httpx.AsyncClient() as anonymous:
        assert (await anonymous.get(f"{query_url}/healthz")).json() == {"status": "ok"}
        assert (await anonymous.get(f"{query_url}/readyz")).json()["status"] == "ready"
        engine = f"http://127.0.0.1:{stack.config.engine_port}"
        assert (await anonymous.get(f"{engine}/readyz")).json()["checks"] == {"database": "ok", "sqs": "ok", "sns": "ok"}
        assert "flow_engine_outcomes_total" in (await anonymous.get(f"{engine}/metrics")).text


async def test_reads_survive_dropped_database_connections(stack, query_url, http):
    """The service pings no pooled connection before a read (a round trip on every request): a read
    that meets a dead one (the server restarted, a failover) is tried again on another connection."""
    for _ in range(4):  # the pool holds connections now
        assert (await http.get(f"{query_url}/v1/events/1")).status_code == 200
    database = await asyncpg.connect(asyncpg_dsn(stack.replica_url or stack.database_url))  # where query reads
    try:
        dropped = await database.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                          "WHERE application_name = 'flow-query'")
    finally:
        await database.close()
    assert dropped >= 1
    for path in ("/v1/events/1", "/v1/accounts/0004/000000001/statement", "/v1/accounts/0004/000000001/balance"):
        response = await http.get(f"{query_url}{path}")
        assert response.status_code == 200, response.text
    ready = (await http.get(f"{query_url}/readyz")).json()
    assert ready == {"status": "ready", "checks": {"database": "ok", "replica": "ok"}}, ready


@pytest.mark.parametrize("at", ["2026-11-24T10:00:00+00:00", "2026-11-24T10:00:00.5+00:00",
                                "2026-11-24T10:00:00.000001+00:00", "2026-11-24T23:59:59.999990-03:00",
                                "0999-01-02T03:04:05.123456+00:00"])
async def test_the_database_writes_timestamps_as_the_models_do(stack, at):
    """Statement lines are written by PostgreSQL (queries.utc_text); they must read as pydantic writes them."""
    value = datetime.fromisoformat(at)
    database = await asyncpg.connect(asyncpg_dsn(stack.database_url), server_settings={"timezone": "UTC"})
    try:
        written = await database.fetchval(f"SELECT {utc_text('$1::timestamptz')}", value)
    finally:
        await database.close()
    assert written == TypeAdapter(datetime).dump_json(value.astimezone(UTC)).decode().strip('"')
