"""Traces keyed on the tracekey: the stack's services export to an OTLP receiver (tests/otlp.py), and a
posting's spans (ingest's answer, the engine's apply, its callback's publication, a client's reads)
land in the trace whose id is its tracekey."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from flow_kit import tracing
from tests.waiting import wait_until_async


def posting(**change) -> dict:
    return {"branch": "0008", "account": "000000001", "amount": "5.00", "debitcredit": "D", "eventcode": 1,
            "dateref": datetime.now(UTC).date().isoformat(), "tracekey": str(uuid.uuid4()), **change}


async def _spans(otlp, tracekey: str, names: set[str], timeout: float = 30) -> dict[str, dict]:
    trace_id = uuid.UUID(tracekey).hex
    return await wait_until_async(lambda: {s["name"]: s for s in otlp.of_trace(trace_id)},
                                  f"spans {sorted(names)} in trace {trace_id}", timeout,
                                  holds=lambda found: names <= found.keys(), describe=lambda found: sorted(found))


@pytest.mark.integration
async def test_a_postings_spans_share_its_tracekey_as_trace_id(otlp, ingest_url, query_url, http, callbacks):
    sent = posting()
    answer = (await http.post(f"{ingest_url}/v1/transactions", json=sent)).json()
    [called_back, *_] = (await callbacks.collect({sent["tracekey"]}, timeout=60))[sent["tracekey"]]
    spans = await _spans(otlp, sent["tracekey"], {"flow.ingest.accept", "flow.engine.apply", "flow.engine.callback"})

    accepted = spans["flow.ingest.accept"]
    assert accepted["service"] == "flow-ingest" and accepted["parent"] == ""  # the trace's root in ingest
    assert accepted["attributes"] == {"flow.tracekey": sent["tracekey"], "flow.posting.id": answer["id"],
                                      "flow.result": "accepted", "flow.code": ""}
    applied = spans["flow.engine.apply"]
    assert applied["service"] == "flow-engine"
    assert applied["attributes"]["flow.posting.id"] == answer["id"]
    assert (applied["attributes"]["flow.status"], applied["attributes"]["flow.code"]) == ("applied", "R000")
    assert accepted["end"] <= applied["start"] < applied["end"]
    # ...and the callback's publication, naming the message the listener received.
    announced = spans["flow.engine.callback"]
    assert announced["attributes"] == {"flow.tracekey": sent["tracekey"], "flow.posting.id": answer["id"],
                                       "flow.code": "R000", "flow.messageid": called_back["messageid"]}
    assert applied["end"] <= announced["end"]

    # A client reading it, by id and by tracekey, shows in the same trace.
    assert (await http.get(f"{query_url}/v1/transactions/{answer['id']}")).json()["status"] == "applied"
    assert len((await http.get(f"{query_url}/v1/transactions", params={"tracekey": sent["tracekey"]})).json()["items"]) == 1
    spans = await _spans(otlp, sent["tracekey"], {"flow.query.transaction", "flow.query.tracekey"})
    assert spans["flow.query.transaction"]["service"] == "flow-query"
    assert spans["flow.query.transaction"]["attributes"] == {
        "flow.tracekey": sent["tracekey"], "flow.posting.id": answer["id"], "flow.status": "applied"}
    assert spans["flow.query.tracekey"]["attributes"] == {"flow.tracekey": sent["tracekey"], "flow.found": 1}
    # The posting's span links to its batch's span, which holds the batch's size.
    [(batch_trace, batch_span)] = applied["links"]
    batch = await wait_until_async(lambda: otlp.by_span_id(batch_span), f"the batch's span {batch_span}", 10,
                                   holds=lambda span: span is not None)
    assert batch["name"] == "flow.engine.batch" and batch["trace_id"] == batch_trace
    assert batch["attributes"]["flow.batch.postings"] == applied["attributes"]["flow.batch.postings"] >= 1


@pytest.mark.integration
async def test_a_refused_posting_and_a_retry_are_traced_under_their_tracekeys(otlp, ingest_url, http, callbacks):
    # Refused by a ledger rule (a body that is not a valid posting has no tracekey to trust: no span).
    refused = posting(dateref=(datetime.now(UTC) - timedelta(days=30)).date().isoformat())
    assert (await http.post(f"{ingest_url}/v1/transactions", json=refused)).json()["code"] == "R007"
    spans = await _spans(otlp, refused["tracekey"], {"flow.ingest.accept"})
    assert spans["flow.ingest.accept"]["attributes"]["flow.result"] == "rejected"
    assert spans["flow.ingest.accept"]["attributes"]["flow.code"] == "R007"

    # A retry with another tracekey is answered as the first time: its span joins the first tracekey's trace.
    first = posting(id=str(uuid.uuid4()))
    await http.post(f"{ingest_url}/v1/transactions", json=first)
    retry = {**first, "tracekey": str(uuid.uuid4())}
    assert (await http.post(f"{ingest_url}/v1/transactions", json=retry)).json()["tracekey"] == first["tracekey"]
    await callbacks.collect({first["tracekey"]}, timeout=60)
    trace_id = uuid.UUID(first["tracekey"]).hex
    await wait_until_async(lambda: [s for s in otlp.of_trace(trace_id) if s["name"] == "flow.ingest.accept"],
                           "both answers' flow.ingest.accept spans in the first tracekey's trace", 30,
                           holds=lambda accepts: len(accepts) >= 2, describe=lambda _: otlp.of_trace(trace_id))
    assert otlp.of_trace(uuid.UUID(retry["tracekey"]).hex) == []


def test_tracing_stays_off_without_an_endpoint(monkeypatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert tracing.configure_tracing("test") is False and not tracing.enabled()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.configure_tracing("test") is False and not tracing.enabled()
