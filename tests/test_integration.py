"""The design's integration test, through the public HTTP APIs: 1,000 postings over 50 accounts with
dates across the retroactive window; wait until every tracekey is reported on FlowCallback; then
every statement and every daily balance row must equal an independent reference model, and every
statement line's running balance follow from the one before, ending on the day's balance."""

import asyncio
import random
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from tests.reference import Posted, ReferenceLedger
from tests.statements import assert_day_ends, assert_running_balances

pytestmark = pytest.mark.integration

POSTINGS = 1000
ACCOUNTS = 50
WINDOW_DAYS = 7


def _money(row: dict) -> dict:
    return {k: (Decimal(v) if k not in ("dateref", "updatedat") else v) for k, v in row.items() if k != "updatedat"}


async def test_postings_travel_end_to_end_and_balances_match_the_reference(ingest_url, query_url, http, callbacks,
                                                                           report):
    seconds = await check_end_to_end(ingest_url, query_url, http, callbacks, POSTINGS)
    report(f"integration: {POSTINGS} postings over {ACCOUNTS} accounts: " + seconds)


async def check_end_to_end(ingest_url: str, query_url: str, http, callbacks, postings: int) -> str:
    """The design's integration test against the services at these URLs; returns how long each part took."""
    rng = random.Random(20261124)
    today = datetime.now(UTC).date()
    branch = f"B{rng.randrange(10**6):06d}"  # fresh accounts: the check covers whole statements
    accounts = [f"{n:09d}" for n in range(ACCOUNTS)]
    bodies = []
    for _ in range(postings):
        body = {
            "id": str(uuid.uuid4()), "tracekey": str(uuid.uuid4()), "branch": branch,
            "account": rng.choice(accounts), "amount": f"{rng.randrange(1, 10**6) / 100:.2f}",
            "debitcredit": rng.choice("DC"), "eventcode": 1,
            "dateref": (today - timedelta(days=rng.randrange(WINDOW_DAYS + 1))).isoformat(),
            "description": "integration", "details": {"n": len(bodies)},
        }
        if rng.random() < 0.02:  # event 2 allows debits only: ingest refuses these, and they change nothing
            body.update(eventcode=2, debitcredit="C")
        bodies.append(body)

    started = time.perf_counter()
    limit = asyncio.Semaphore(16)

    async def post(body: dict) -> None:
        async with limit:
            response = await http.post(f"{ingest_url}/v1/transactions", json=body)
        if body["eventcode"] == 2:
            assert (response.status_code, response.json()["code"]) == (422, "R023")
            return
        assert response.status_code == 202, response.text
        assert response.json() == {"id": body["id"], "tracekey": body["tracekey"], "status": "accepted"}

    await asyncio.gather(*(post(body) for body in bodies))
    accepted = time.perf_counter()

    accepted_bodies = [b for b in bodies if b["eventcode"] == 1]
    outcomes = await callbacks.collect({b["tracekey"] for b in accepted_bodies}, timeout=180)
    reported = time.perf_counter()
    missing = [b["tracekey"] for b in accepted_bodies if b["tracekey"] not in outcomes]
    assert not missing, f"{len(missing)} tracekeys never reported on FlowCallback"
    assert not any(b["tracekey"] in outcomes for b in bodies if b["eventcode"] == 2)

    reference = ReferenceLedger()
    for body in accepted_bodies:
        (outcome,) = {(o["id"], o["status"], o["code"]) for o in outcomes[body["tracekey"]]}
        assert outcome == (body["id"], "applied", "R000")
        reference.apply(Posted(body["id"], branch, body["account"], Decimal(body["amount"]),
                               body["debitcredit"], date.fromisoformat(body["dateref"])))

    start = today - timedelta(days=WINDOW_DAYS)
    window = {"from": start.isoformat(), "to": today.isoformat()}
    for account in accounts:
        statement = (await http.get(f"{query_url}/v1/accounts/{branch}/{account}/statement", params=window)).json()
        assert sorted(line["id"] for line in statement["items"]) == reference.statement_ids(branch, account), account
        opening = reference.balance_at(branch, account, start - timedelta(days=1))
        assert Decimal(statement["opening_balance"]) == opening, account
        closing = assert_running_balances(statement)
        assert closing == reference.balance_at(branch, account, today), account
        balances = (await http.get(f"{query_url}/v1/accounts/{branch}/{account}/balances", params=window)).json()
        assert [_money(row) for row in balances["items"]] == reference.daily(branch, account), account
        assert_day_ends(statement["items"], balances["items"])
    checked = time.perf_counter()
    return (f"accepted in {accepted - started:.1f} s, all reported on FlowCallback after {reported - started:.1f} s, "
            f"checked in {checked - reported:.1f} s ({checked - started:.1f} s in all)")
