"""The ingest API as a client sees it: every validation rule with its code (and nothing published
for a refused posting), idempotent retries, batches, the event catalogue, and who may do what."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

TODAY = datetime.now(UTC).date()


def body(**change) -> dict:
    return {"branch": "0002", "account": "000000001", "amount": "10.00", "debitcredit": "C", "eventcode": 1,
            "dateref": TODAY.isoformat(), "tracekey": str(uuid.uuid4()), **change}


@pytest.fixture(scope="module")
async def retired_event(ingest_url, token):
    """An inactive event, made through the admin API."""
    import httpx

    async with httpx.AsyncClient(headers={"authorization": f"Bearer {token('flow.admin')}"}) as admin:
        created = await admin.post(f"{ingest_url}/v1/events", json={"description": "Retired", "active": False})
        assert created.status_code == 201, created.text
        return created.json()["code"]


@pytest.mark.parametrize(("change", "code"), [
    ({"branch": "00/1"}, "R002"),
    ({"branch": "12345678901"}, "R002"),
    ({"account": ""}, "R003"),
    ({"amount": "0.001"}, "R004"),
    ({"amount": -5}, "R004"),
    ({"amount": "0"}, "R004"),
    ({"amount": "12345678901234.00"}, "R004"),
    ({"debitcredit": "X"}, "R005"),
    ({"eventcode": -1}, "R006"),
    ({"dateref": (TODAY - timedelta(days=8)).isoformat()}, "R007"),
    ({"dateref": (TODAY + timedelta(days=1)).isoformat()}, "R008"),
    ({"tracekey": "not-a-uuid"}, "R009"),
    ({"details": "text"}, "R010"),
    ({"details": {"blob": "x" * 5000}}, "R010"),
    ({"id": "x"}, "R011"),
    ({"unknown": 1}, "R012"),
    ({"dateref": "yesterday"}, "R013"),
    ({"description": "x" * 201}, "R014"),
    ({"description": "nul \u0000 inside"}, "R014"),
    ({"eventcode": 2_000_000_000}, "R020"),
    ("retired", "R021"),
    ({"eventcode": 3, "debitcredit": "D"}, "R022"),
    ({"eventcode": 2, "debitcredit": "C"}, "R023"),
])
async def test_each_rule_refuses_with_its_code_and_publishes_nothing(ingest_url, http, requests_topic, retired_event,
                                                                      change, code):
    sent = body(eventcode=retired_event) if change == "retired" else body(**change)
    response = await http.post(f"{ingest_url}/v1/transactions", json=sent)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code and response.json()["message"]
    good = body()
    assert (await http.post(f"{ingest_url}/v1/transactions", json=good)).status_code == 202
    seen = await requests_topic.collect({good["tracekey"]}, timeout=30)
    assert good["tracekey"] in seen and sent["tracekey"] not in seen


@pytest.mark.parametrize("path", ["/v1/transactions", "/v1/transactions/batch"])
async def test_a_body_that_is_not_json_says_where_it_breaks(ingest_url, http, path):
    response = await http.post(f"{ingest_url}{path}", content=b'{"items": [{"branch": "0001"',
                               headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json() == {"code": "R019", "message": "request body is not valid JSON", "position": 28}


async def test_a_body_that_is_not_a_posting_or_too_large_is_refused(ingest_url, http):
    for content in (b"[1]", b'"text"', b""):
        response = await http.post(f"{ingest_url}/v1/transactions", content=content,
                                   headers={"content-type": "application/json"})
        assert response.status_code == 422 and response.json() == {
            "code": "R001", "message": "request body is not a valid posting"}, content  # no field to name
    response = await http.post(f"{ingest_url}/v1/transactions", json={"branch": "0001"})
    assert response.json()["code"] == "R003"  # the first missing field's code; every missing field named
    assert response.json()["fields"] == ["account", "amount", "debitcredit", "eventcode", "dateref"]
    huge = json.dumps(body(description="x" * 70_000)).encode()
    response = await http.post(f"{ingest_url}/v1/transactions", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["code"] == "R015"


async def test_the_posting_is_published_with_its_tracekey_and_acceptance_time(ingest_url, http, requests_topic):
    sent = body(details={"origin": "test"}, description="hello")
    response = await http.post(f"{ingest_url}/v1/transactions", json=sent)
    assert response.status_code == 202
    answer = response.json()
    assert str(uuid.UUID(answer["id"])) == answer["id"]  # a drawn id, in canonical form
    assert answer["tracekey"] == sent["tracekey"] and answer["status"] == "accepted"
    (message,) = (await requests_topic.collect({sent["tracekey"]}, timeout=30))[sent["tracekey"]]
    assert message["id"] == answer["id"] and message["details"] == {"origin": "test"}
    assert message["amount"] == "10.00" and datetime.fromisoformat(message["acceptedat"]).date() == TODAY


async def test_a_tracekey_is_drawn_when_none_is_sent(ingest_url, http):
    sent = body()
    del sent["tracekey"]
    answer = (await http.post(f"{ingest_url}/v1/transactions", json=sent)).json()
    assert str(uuid.UUID(answer["tracekey"])) == answer["tracekey"]


async def test_a_retried_id_gets_the_first_answer_and_other_content_is_refused(ingest_url, query_url, http, callbacks):
    first = body(id=str(uuid.uuid4()), account="000000901")
    answer = (await http.post(f"{ingest_url}/v1/transactions", json=first)).json()
    retry = {**first, "tracekey": str(uuid.uuid4())}  # a client that draws a new tracekey on retry
    again = await http.post(f"{ingest_url}/v1/transactions", json=retry)
    assert again.status_code == 202 and again.json() == answer
    other = await http.post(f"{ingest_url}/v1/transactions", json={**first, "amount": "11.00"})
    assert other.status_code == 409 and other.json()["code"] == "R030"
    await callbacks.collect({first["tracekey"]}, timeout=60)
    statement = (await http.get(f"{query_url}/v1/accounts/0002/000000901/statement")).json()
    assert [line["id"] for line in statement["items"]] == [first["id"]]  # applied once


async def test_a_batch_answers_each_posting_and_publishes_the_good_ones(ingest_url, http, callbacks):
    repeated = str(uuid.uuid4())
    items = [body(account="000000902"), body(amount="0"), "not an object", body(account="000000902", eventcode=2),
             body(account="000000902", id=repeated), body(account="000000902", id=repeated, amount="99.00")]
    response = await http.post(f"{ingest_url}/v1/transactions/batch", json={"items": items})
    assert response.status_code == 202, response.text
    out = response.json()
    assert [(i["index"], i["status"], i["code"]) for i in out["items"]] == [
        (0, "accepted", None), (1, "rejected", "R004"), (2, "rejected", "R001"), (3, "rejected", "R023"),
        (4, "accepted", None), (5, "rejected", "R030")]
    assert (out["accepted"], out["rejected"], out["failed"]) == (2, 4, 0)
    seen = await callbacks.collect({items[0]["tracekey"], items[4]["tracekey"]}, timeout=60)
    assert all(seen[items[n]["tracekey"]][0]["status"] == "applied" for n in (0, 4))


@pytest.mark.parametrize("items", [[], [body() for _ in range(1001)]])
async def test_a_batch_holds_1_to_1000_postings(ingest_url, http, items):
    response = await http.post(f"{ingest_url}/v1/transactions/batch", json={"items": items})
    assert response.status_code == 422 and response.json()["code"] == "R016"


async def test_admins_manage_the_event_catalogue_and_query_reads_it(ingest_url, query_url, http, token):
    created = await http.post(f"{ingest_url}/v1/events", json={"description": "Chargeback", "allowcredit": False})
    assert created.status_code == 201
    event = created.json()
    assert (event["active"], event["allowdebit"], event["allowcredit"]) == (True, True, False)
    code = event["code"]
    changed = await http.patch(f"{ingest_url}/v1/events/{code}", json={"active": False, "description": "Chargeback (old)"})
    assert changed.status_code == 200 and changed.json()["active"] is False
    assert changed.json()["updatedat"] > event["updatedat"] and changed.json()["createdat"] == event["createdat"]
    read = (await http.get(f"{query_url}/v1/events/{code}")).json()
    assert read == changed.json()
    assert code in [e["code"] for e in (await http.get(f"{query_url}/v1/events")).json()["items"]]
    assert (await http.post(f"{ingest_url}/v1/events", json={"code": 1, "description": "dup"})).json()["code"] == "R018"
    missing = await http.patch(f"{ingest_url}/v1/events/2000000000", json={"active": True})
    assert missing.status_code == 404 and missing.json()["code"] == "R020"
    bad = await http.post(f"{ingest_url}/v1/events", json={"description": ""})
    assert bad.status_code == 422 and bad.json()["code"] == "R017"
    writer = {"authorization": f"Bearer {token('flow.write')}"}
    refused = await http.post(f"{ingest_url}/v1/events", json={"description": "x"}, headers=writer)
    assert refused.status_code == 403 and refused.json()["code"] == "R075"


async def test_health_readiness_and_metrics_need_no_token(ingest_url):
    import httpx

    async with httpx.AsyncClient() as anonymous:
        assert (await anonymous.get(f"{ingest_url}/healthz")).json() == {"status": "ok"}
        ready = (await anonymous.get(f"{ingest_url}/readyz")).json()
        assert ready == {"status": "ready", "checks": {"database": "ok", "sns": "ok"}}
        assert "flow_ingest_postings_total" in (await anonymous.get(f"{ingest_url}/metrics")).text
