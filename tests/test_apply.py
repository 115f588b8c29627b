"""The transactional engine's SQL against a real PostgreSQL: semantics, idempotency, rules, and a
property test against the reference model."""

import asyncio
import subprocess
import sys
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from flow_engine.reconcile import find_mismatches
from flow_rules.codes import Code
from flow_kit.db import create_engine
from tests.engine_helpers import TODAY, apply, assert_matches_reference, balance_rows, posting, transaction_ids
from tests.reference import Posted, ReferenceLedger

D = Decimal


@pytest.fixture
async def db(fresh_database):
    engine = create_engine(fresh_database, 4)
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO flow.event (code, description, active) VALUES (4, 'Retired', false)"))
    yield engine
    await engine.dispose()


async def test_a_retroactive_posting_updates_every_later_day(db):
    await apply(db, [posting(amount="100.00", debitcredit="C", days_back=1)])
    await apply(db, [posting(amount="30.00", debitcredit="D", days_back=0)])
    await apply(db, [posting(amount="5.50", debitcredit="D", days_back=5)])  # before both
    rows = await balance_rows(db)
    assert rows == {
        ("000000001", TODAY.fromordinal(TODAY.toordinal() - 5)): (D("5.50"), D("0"), D("5.50"), D("0")),
        ("000000001", TODAY.fromordinal(TODAY.toordinal() - 1)): (D("0"), D("100.00"), D("5.50"), D("100.00")),
        ("000000001", TODAY): (D("30.00"), D("0"), D("35.50"), D("100.00")),
    }


async def test_several_days_of_one_account_in_one_batch(db):
    batch = [posting(amount="1.00", days_back=3), posting(amount="2.00", days_back=1, debitcredit="D"),
             posting(amount="4.00", days_back=3), posting(amount="8.00", days_back=2)]
    outcomes = await apply(db, batch)
    assert [o.code for o in outcomes] == [Code.APPLIED] * 4
    rows = await balance_rows(db)
    assert [rows[k] for k in sorted(rows)] == [
        (D(0), D("5.00"), D(0), D("5.00")), (D(0), D("8.00"), D(0), D("13.00")), (D("2.00"), D(0), D("2.00"), D("13.00"))]


async def test_day_rows_name_the_posting_that_created_them_and_the_last_that_moved_them(db):
    """tracekey: the creating batch's last posting of that day; updatetracekey: the account's last
    posting in the latest batch that moved the row (batch order)."""
    two_back, today_, again = posting(days_back=2), posting(), posting(days_back=2)
    await apply(db, [two_back, today_, again])
    yesterday = posting(days_back=1)
    await apply(db, [yesterday])
    async with db.connect() as conn:
        rows = {r.dateref: (r.tracekey, r.updatetracekey) for r in await conn.execute(
            text("SELECT dateref, tracekey, updatetracekey FROM flow.balance"))}
    assert rows == {
        TODAY - timedelta(days=2): (again.tracekey, again.tracekey),  # before the second batch's day: untouched
        TODAY - timedelta(days=1): (yesterday.tracekey, yesterday.tracekey),
        TODAY: (today_.tracekey, yesterday.tracekey),  # moved by the retroactive posting
    }


async def test_a_redelivered_posting_changes_nothing_and_reports_the_same_outcome(db):
    first = posting(amount="12.34")
    (outcome,) = await apply(db, [first])
    before = await balance_rows(db)
    again = await apply(db, [first, first])  # redelivered twice, once inside one batch
    assert again == [outcome, outcome]
    assert await balance_rows(db) == before
    assert await transaction_ids(db) == [str(first.id)]


async def test_an_id_reused_with_other_content_is_rejected_and_the_first_stands(db):
    first = posting(amount="10.00")
    await apply(db, [first])
    reused = first.model_copy(update={"amount": D("99.00")})
    (outcome,) = await apply(db, [reused])
    assert outcome.code is Code.ID_REUSED and outcome.status == "rejected"
    same_batch = posting(amount="1.00")
    outcomes = await apply(db, [same_batch, same_batch.model_copy(update={"debitcredit": "D"})])
    assert [o.code for o in outcomes] == [Code.APPLIED, Code.ID_REUSED]
    assert (await balance_rows(db))[("000000001", TODAY)] == (D(0), D("11.00"), D(0), D("11.00"))


@pytest.mark.parametrize(("change", "code"), [
    ({"eventcode": 99}, Code.EVENT_NOT_FOUND),
    ({"eventcode": 4}, Code.EVENT_INACTIVE),
    ({"eventcode": 3, "debitcredit": "D"}, Code.EVENT_DISALLOWS_DEBIT),
    ({"eventcode": 2, "debitcredit": "C"}, Code.EVENT_DISALLOWS_CREDIT),
    ({"days_back": 8}, Code.DATEREF_TOO_OLD),
    ({"days_back": -1}, Code.DATEREF_IN_FUTURE),
])
async def test_a_posting_that_can_never_apply_is_recorded_as_rejected_and_changes_no_balance(db, change, code):
    rejected = posting(**change)
    outcome, _ = await apply(db, [rejected, posting(account="000000002")])
    assert outcome.code is code and outcome.status == "rejected"
    assert await transaction_ids(db) != [] and str(rejected.id) not in await transaction_ids(db)
    assert {account for account, _ in await balance_rows(db)} == {"000000002"}
    (again,) = await apply(db, [rejected])
    assert again.code is code  # the recorded rejection is reported again on redelivery


async def test_reconciliation_finds_a_tampered_row_and_the_command_exits_non_zero(db, fresh_database):
    await apply(db, [posting(days_back=2), posting(days_back=1, debitcredit="D")])
    cli = [sys.executable, "-m", "flow_engine.reconcile", "--database-url", fresh_database]
    assert subprocess.run(cli, capture_output=True).returncode == 0
    async with db.begin() as conn:
        await conn.execute(text("UPDATE flow.balance SET accumulatedcredit = accumulatedcredit + 1 WHERE dateref = :d"),
                           {"d": TODAY.fromordinal(TODAY.toordinal() - 1)})
        assert len(await find_mismatches(conn)) == 1
    done = subprocess.run(cli, capture_output=True, text=True)
    assert done.returncode == 1 and '"code": "R060"' in done.stdout


# -- property: any sequence, split into any batches, equals the reference ---------------------------

_accounts = st.sampled_from(["A1", "A2", "A3"])
_step = st.tuples(
    st.sampled_from(["new", "new", "new", "redeliver", "reuse", "reject"]),
    _accounts,
    st.integers(1, 100_000).map(lambda cents: f"{cents / 100:.2f}"),
    st.sampled_from("DC"),
    st.integers(0, 7),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_step, min_size=1, max_size=40), cuts=st.randoms(use_true_random=False))
def test_any_sequence_in_any_batch_split_matches_the_reference(fresh_database, steps, cuts):
    branch = f"P{uuid.uuid4().hex[:8]}"
    sent, reference, expected_codes = [], ReferenceLedger(), []
    for kind, account, amount, side, days_back in steps:
        if kind == "redeliver" and sent:
            message = cuts.choice(sent)
        elif kind == "reuse" and sent:
            message = cuts.choice(sent).model_copy(update={"amount": Decimal(amount) + 1})
        elif kind == "reject":
            message = posting(account=account, amount=amount, debitcredit=side, days_back=days_back, branch=branch,
                              eventcode=99)
        else:
            message = posting(account=account, amount=amount, debitcredit=side, days_back=days_back, branch=branch)
        sent.append(message)

    # The reference: the first content seen for an id wins; later other content is refused.
    first_by_id: dict = {}
    for message in sent:
        original = first_by_id.setdefault(message.id, message)
        if message is not original and message.amount != original.amount:
            expected_codes.append(Code.ID_REUSED)
        elif original.eventcode == 99:
            expected_codes.append(Code.EVENT_NOT_FOUND)
        else:
            expected_codes.append(Code.APPLIED)
            reference.apply(Posted(str(message.id), branch, message.account, message.amount, message.debitcredit,
                                   message.dateref))

    async def run():
        engine = create_engine(fresh_database, 2)
        try:
            outcomes, rest = [], list(sent)
            while rest:
                size = cuts.randint(1, len(rest))
                outcomes += await apply(engine, rest[:size])
                rest = rest[size:]
            assert [o.code for o in outcomes] == expected_codes
            await assert_matches_reference(engine, reference, branch)
        finally:
            await engine.dispose()

    asyncio.run(run())
