"""Security of requests: what a request costs before its token is checked, and that one client's
posting cannot fail another's.

The memory tests run ingest in-process (httpx's ASGI transport, no lifespan: a refused request
touches neither the database nor SNS) against a real dev issuer, and measure with tracemalloc what
the service allocates while answering."""

import asyncio
import json
import tracemalloc
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from flow_ingest.app import create_app
from flow_ingest.settings import IngestSettings
from flow_kit.auth import AuthSettings
from tools.devstack.issuer import DevIssuer

BATCH = "/v1/transactions/batch"
# What an unauthenticated request may cost ingest at most: its headers and a response, not its body.
_UNAUTHENTICATED_BOUND = 2 * 1024 * 1024


def _posting(n: int) -> dict:
    return {"branch": "0001", "account": f"{n:09d}", "amount": "1.00", "debitcredit": "C", "eventcode": 1,
            "dateref": datetime.now(UTC).date().isoformat(), "details": {"note": "x" * 200}}


def _eight_megabytes() -> bytes:
    """A batch body just under the 8 MiB batch limit: many small postings (the costliest to parse)."""
    item = json.dumps(_posting(1)).encode()
    count = (8 * 1024 * 1024 - 100) // (len(item) + 1)
    body = b'{"items": [' + b",".join([item] * count) + b"]}"
    assert 8_000_000 < len(body) <= 8 * 1024 * 1024
    return body


@pytest.fixture(scope="module")
def issuer() -> DevIssuer:
    with DevIssuer() as issuer:
        yield issuer


@pytest.fixture(scope="module")
def ingest(issuer):
    settings = IngestSettings(request_topic_arn="arn:aws:sns:us-east-1:000000000000:FlowRequest",
                              database_url="postgresql+asyncpg://flow@127.0.0.1:1/flow",
                              max_batch_body_bytes=8 * 1024 * 1024)  # as before: the gate, not the limit, must save it
    auth = AuthSettings(enabled=True, issuer=issuer.issuer, audience=[issuer.audience],
                        discovery_url=issuer.discovery_url)
    return create_app(settings, auth)


async def _peak(ingest, body: bytes, headers: dict) -> tuple[httpx.Response, int]:
    """The answer, and the peak of what was allocated (beyond the body itself) while answering."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ingest), base_url="http://flow") as client:
        # once first, so imports, key fetches and caches are not counted
        await client.post(BATCH, content=b"{}", headers={"content-type": "application/json", **headers})
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            response = await client.post(BATCH, content=body, headers={"content-type": "application/json", **headers})
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
    return response, peak


@pytest.mark.parametrize("case", ["no token", "bad token", "wrong scope"])
async def test_an_unauthenticated_eight_megabyte_batch_costs_no_more_than_its_headers(ingest, issuer, case):
    body = _eight_megabytes()
    headers, status, code = {
        "no token": ({}, 401, "R070"),
        "bad token": ({"authorization": "Bearer a.b.c"}, 401, "R071"),
        "wrong scope": ({"authorization": f"Bearer {issuer.mint(['flow.read'])}"}, 403, "R075"),
    }[case]
    response, peak = await _peak(ingest, body, headers)
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert set(response.json()) == {"code", "message"}
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert response.headers["cache-control"] == "no-store"
    print(f"{case}: peak {peak / 1e6:.2f} MB for a {len(body) / 1e6:.1f} MB body")
    assert peak < _UNAUTHENTICATED_BOUND, f"{peak / 1e6:.1f} MB allocated before refusing"


async def test_the_body_is_not_read_before_the_token_is_checked(ingest):
    """The request's body is never received: the ASGI receive callable is not even called."""
    received = []
    response_start = {}

    async def receive():
        received.append(1)
        return {"type": "http.request", "body": b'{"items": []}', "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            response_start.update(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": BATCH, "raw_path": BATCH.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"flow"), (b"content-type", b"application/json"), (b"content-length", b"13")],
             "client": ("127.0.0.1", 1), "server": ("flow", 80)}
    await ingest(scope, receive, send)
    assert response_start["status"] == 401
    assert received == []


async def test_a_good_token_still_reaches_the_endpoint(ingest, issuer):
    """The token is checked once, before the body; the endpoint still sees the caller (a refused batch
    here: the body is checked after the token)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ingest), base_url="http://flow") as client:
        response = await client.post(BATCH, json={"items": []},
                                     headers={"authorization": f"Bearer {issuer.mint(['flow.write'])}"})
    assert response.status_code == 422 and response.json()["code"] != "R070"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ingest), base_url="http://flow") as client:
        assert (await client.get("/healthz")).status_code == 200  # open endpoints stay open


# --- isolation between clients: a posting that cannot be published fails alone ----------------------

_NESTED = '{"a":' * 40 + "1" + "}" * 40


@pytest.mark.parametrize("details", ['{"note": "\\ud800"}', _NESTED, '{"note": "\\udfff\\ud800"}'],
                         ids=["lone-surrogate", "nested-40", "reversed-pair"])
async def test_a_posting_that_cannot_be_published_does_not_fail_concurrent_ones(ingest_url, http, requests_topic,
                                                                               details):
    """Ten clients post at once (their postings share PublishBatch calls); one posting holds details
    no message can carry. It is refused with R010; every other one is accepted and published."""
    good = [{**_posting(n), "tracekey": str(uuid.uuid4())} for n in range(9)]
    bad = json.dumps({**_posting(99), "details": None}).replace('"details": null', f'"details": {details}')
    requests = [http.post(f"{ingest_url}/v1/transactions", json=p) for p in good[:5]]
    requests.append(http.post(f"{ingest_url}/v1/transactions", content=bad.encode(),
                              headers={"content-type": "application/json"}))
    requests += [http.post(f"{ingest_url}/v1/transactions", json=p) for p in good[5:]]
    answers = await asyncio.gather(*requests)
    assert [r.status_code for r in answers] == [202] * 5 + [422] + [202] * 4
    assert answers[5].json()["code"] == "R010"
    sent = {p["tracekey"] for p in good}
    assert sent <= (await requests_topic.collect(sent)).keys()


async def test_a_batch_with_an_unpublishable_posting_answers_the_others(ingest_url, http, requests_topic):
    good = [{**_posting(n), "tracekey": str(uuid.uuid4())} for n in range(9)]
    items = [json.dumps(p) for p in good[:4]] + ['{"branch": "0001", "account": "000000001", "amount": "1.00", '
                                                 '"debitcredit": "C", "eventcode": 1, "dateref": "'
                                                 + datetime.now(UTC).date().isoformat()
                                                 + '", "details": {"x": "\\ud800"}}'] + [json.dumps(p) for p in good[4:]]
    response = await http.post(f"{ingest_url}/v1/transactions/batch", content=f'{{"items": [{",".join(items)}]}}',
                               headers={"content-type": "application/json"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"], body["failed"]) == (9, 1, 0)
    assert body["items"][4]["code"] == "R010"
    sent = {p["tracekey"] for p in good}
    assert sent <= (await requests_topic.collect(sent)).keys()
