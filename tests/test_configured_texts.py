"""A code's text states the limit the service was configured with, not the default: ingest and query
in-process (as in test_entitlements.py) with limits of their own."""

from datetime import date, timedelta

import pytest

from flow_rules.codes import Code
from flow_rules.limits import Configured
from tests.test_entitlements import body, mint, service


def test_every_text_states_the_defaults_and_renders_with_any_configuration():
    assert "4096 bytes" in Code.INVALID_DETAILS.message and "366 days" in Code.INVALID_RANGE.message
    assert "{" not in "".join(code.text(Configured(max_details_bytes=1, max_range_days=2)) for code in Code)
    assert Code.INVALID_DETAILS.text(Configured(max_details_bytes=64)) == \
        "details must be a JSON object of at most 64 bytes"


async def test_ingest_states_its_details_limit(stack, monkeypatch):
    monkeypatch.setenv("FLOW_INGEST_MAX_DETAILS_BYTES", "64")
    big = {"note": "x" * 80}
    async with service(stack, "ingest", entitlements=None) as ingest:
        headers = {"authorization": f"Bearer {mint(stack, 'flow-dev')}"}
        one = await ingest.post("/v1/transactions", json=body(details=big), headers=headers)
        nested: object = 1
        for _ in range(40):  # deeper than details may nest: refused by the model, before the size check
            nested = [nested]
        deep = await ingest.post("/v1/transactions", json=body(details={"a": nested}), headers=headers)
        batch = await ingest.post("/v1/transactions/batch", json={"items": [body(details=big), body()]},
                                  headers=headers)
    expected = "details must be a JSON object of at most 64 bytes"
    assert (one.status_code, one.json()) == (422, {"code": "R010", "message": expected})
    assert deep.status_code == 422 and deep.json()["code"] == "R010" and deep.json()["message"] == expected
    assert batch.status_code == 202
    refused, accepted = batch.json()["items"]
    assert (refused["code"], refused["message"], accepted["status"]) == ("R010", expected, "accepted")


@pytest.mark.parametrize("span", [30, 31])
async def test_query_states_its_range_limit(stack, monkeypatch, span):
    monkeypatch.setenv("FLOW_QUERY_MAX_RANGE_DAYS", "31")
    async with service(stack, "query", entitlements=None) as query:
        answer = await query.get("/v1/accounts/0001/000000001/balances",
                                 params={"from": "2026-01-01", "to": str(date(2026, 1, 1) + timedelta(days=span))},
                                 headers={"authorization": f"Bearer {mint(stack, 'flow-dev')}"})
    if span == 30:  # 31 days, the first to the 31st: the longest range allowed
        assert answer.status_code == 200, answer.text
    else:
        assert (answer.status_code, answer.json()) == (
            422, {"code": "R041", "message": "from and to must be dates with from <= to, spanning at most 31 days"})
