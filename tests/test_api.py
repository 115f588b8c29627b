"""The public HTTP APIs as a client sees them: answers, message codes, and that a refused request
publishes nothing."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

TODAY = datetime.now(UTC).date()


def body(**change) -> dict:
    return {"branch": "0002", "account": "000000001", "amount": "10.00", "debitcredit": "C", "eventcode": 1,
            "dateref": TODAY.isoformat(), "tracekey": str(uuid.uuid4()), **change}


@pytest.mark.parametrize(("change", "code"), [
    ({"branch": "00/1"}, "R002"),
    ({"account": ""}, "R003"),
    ({"amount": "0.001"}, "R004"),
    ({"amount": -5}, "R004"),
    ({"debitcredit": "X"}, "R005"),
    ({"eventcode": -1}, "R006"),
    ({"dateref": (TODAY - timedelta(days=8)).isoformat()}, "R007"),
    ({"dateref": (TODAY + timedelta(days=1)).isoformat()}, "R008"),
    ({"dateref": "yesterday"}, "R013"),
    ({"details": "text"}, "R010"),
    ({"id": "x"}, "R011"),
    ({"unknown": 1}, "R012"),
])
async def test_ingest_refuses_bad_postings_with_their_code_and_publishes_nothing(ingest_url, http, requests_topic,
                                                                                 change, code):
    sent = body(**change)
    response = await http.post(f"{ingest_url}/v1/transactions", json=sent)
    assert response.status_code == 422
    assert response.json()["code"] == code
    assert set(response.json()) >= {"code", "message"}
    good = body()
    assert (await http.post(f"{ingest_url}/v1/transactions", json=good)).status_code == 202
    seen = await requests_topic.collect({good["tracekey"]}, timeout=30)
    assert good["tracekey"] in seen and sent["tracekey"] not in seen


async def test_ingest_refuses_a_body_that_is_not_a_posting(ingest_url, http):
    response = await http.post(f"{ingest_url}/v1/transactions", content=b"not json",
                               headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["code"] == "R001"


async def test_ingest_publishes_the_posting_with_its_tracekey_and_acceptance_time(ingest_url, http, requests_topic):
    sent = body(details={"origin": "test"}, description="hello")
    response = await http.post(f"{ingest_url}/v1/transactions", json={k: v for k, v in sent.items()})
    assert response.status_code == 202
    answer = response.json()
    uuid.UUID(answer["id"])
    assert answer["tracekey"] == sent["tracekey"] and answer["status"] == "accepted"
    (message,) = (await requests_topic.collect({sent["tracekey"]}, timeout=30))[sent["tracekey"]]
    assert message["id"] == answer["id"] and message["details"] == {"origin": "test"}
    assert message["amount"] == "10.00" and message["acceptedat"].startswith(TODAY.isoformat()[:7])


async def test_ingest_draws_a_tracekey_when_none_is_sent(ingest_url, http):
    sent = body()
    del sent["tracekey"]
    answer = (await http.post(f"{ingest_url}/v1/transactions", json=sent)).json()
    uuid.UUID(answer["tracekey"])


async def test_query_reads_back_an_applied_and_a_rejected_posting(ingest_url, query_url, http, callbacks):
    applied, rejected = body(account="000000777"), body(account="000000777", eventcode=3, debitcredit="D")
    ids = [(await http.post(f"{ingest_url}/v1/transactions", json=b)).json()["id"] for b in (applied, rejected)]
    await callbacks.collect({applied["tracekey"], rejected["tracekey"]}, timeout=60)
    one = (await http.get(f"{query_url}/v1/transactions/{ids[0]}")).json()
    assert one["status"] == "applied" and one["amount"] == "10.00" and one["tracekey"] == applied["tracekey"]
    two = (await http.get(f"{query_url}/v1/transactions/{ids[1]}")).json()
    assert (two["status"], two["code"]) == ("rejected", "R022") and two["amount"] is None


@pytest.mark.parametrize(("path", "status", "code"), [
    (f"/v1/transactions/{uuid.uuid4()}", 404, "R040"),
    ("/v1/transactions/not-a-uuid", 422, "R011"),
    ("/v1/accounts/0001/000000001/statement?from=2026-01-10&to=2026-01-01", 422, "R041"),
    ("/v1/accounts/0001/000000001/balances?from=2020-01-01&to=2026-01-01", 422, "R041"),
    ("/v1/accounts/0001/000000001/balances?from=someday", 422, "R041"),
    ("/v1/accounts/00-1/000000001/statement", 422, "R002"),
    ("/v1/accounts/0001/0000%2000001/balances", 422, "R003"),
])
async def test_query_errors_carry_their_code(query_url, http, path, status, code):
    response = await http.get(f"{query_url}{path}")
    assert response.status_code == status and response.json()["code"] == code


@pytest.mark.parametrize("port", ["ingest_url", "query_url"])
async def test_health_readiness_and_metrics(request, http, port):
    url = request.getfixturevalue(port)
    assert (await http.get(f"{url}/healthz")).json() == {"status": "ok"}
    ready = await http.get(f"{url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert "python_info" in (await http.get(f"{url}/metrics")).text


async def test_engine_readiness_and_metrics(stack, http):
    url = f"http://127.0.0.1:{stack.config.engine_port}"
    assert (await http.get(f"{url}/readyz")).json()["checks"] == {"database": "ok", "sqs": "ok", "sns": "ok"}
    assert "flow_engine_outcomes_total" in (await http.get(f"{url}/metrics")).text
