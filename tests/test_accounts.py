"""The account registry judged by the engine (status, blocks, overdraft limits, forced debits, unknown
accounts) against a real PostgreSQL: explicit cases, the race an admin change can win, a property
test against the reference model, and parallel appliers on a hot account with a limit."""

import asyncio
import random
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from flow_engine.apply import apply_batch
from flow_engine.relay import claimed_outcomes
from flow_ingest.accounts import AccountRegistry
from flow_rules.accounts import account_lock_key
from flow_rules.codes import Code
from flow_kit.db import create_engine, is_transient
from flow_kit.errors import FlowError
from tests.engine_helpers import TODAY, assert_matches_reference, balance_rows, posting, transaction_ids
from tests.reference import Posted, ReferenceAccounts, Registered

D = Decimal
FORCED = 5  # the demo catalogue's forced debit (Court order)


@pytest.fixture
async def db(fresh_database):
    engine = create_engine(fresh_database, 6)
    yield engine
    await engine.dispose()


async def apply(db, postings, reject_unknown=False):
    async with db.begin() as conn:
        return await apply_batch(conn, postings, 7, reject_unknown=reject_unknown)


async def codes(db, postings, **options) -> list[str]:
    return [o.code.value for o in await apply(db, postings, **options)]


async def last_callbacks(db) -> list[dict]:
    """The callbacks of the newest outbox row, rendered as the relay renders them."""
    async with db.connect() as conn:
        row = (await conn.execute(text("SELECT seq, ids, tracekeys, codes, balances, availables "
                                       "FROM flow.callback_outbox ORDER BY seq DESC LIMIT 1"))).one()
        [(_, claimed)] = await claimed_outcomes(conn, [row])
    return [c.outcome.callback() for c in claimed]


async def test_a_debit_beyond_the_limit_is_refused_with_its_figures_and_changes_nothing(db):
    accounts = AccountRegistry(db)
    await accounts.open("0001", "L1", limit=D("100.00"))
    assert await codes(db, [posting("L1", "50.00", "C")]) == ["R000"]
    before = await balance_rows(db)
    refused = posting("L1", "150.01", "D")
    assert await codes(db, [refused]) == ["R028"]
    assert await balance_rows(db) == before
    assert str(refused.id) not in await transaction_ids(db)
    [callback] = await last_callbacks(db)
    assert callback["code"] == "R028" and callback["status"] == "rejected"
    assert (callback["available"], callback["shortfall"], callback["breakday"]) == ("150.00", "0.01", TODAY.isoformat())
    async with db.connect() as conn:
        stored = (await conn.execute(text("SELECT code, available, shortfall, breakday FROM flow.outcome WHERE id = :id"),
                                     {"id": refused.id})).one()
    assert tuple(stored) == ("R028", D("150.00"), D("0.01"), TODAY)
    # Exactly to the limit is allowed; the applied posting's callback carries balance and available.
    assert await codes(db, [posting("L1", "150.00", "D")]) == ["R000"]
    [applied] = await last_callbacks(db)
    assert (applied["balance"], applied["available"]) == ("-100.00", "0.00")


async def test_a_retroactive_debit_must_hold_every_later_day(db):
    accounts = AccountRegistry(db)
    await accounts.open("0001", "L2", limit=D("0.00"))
    # 3 days ago +100, yesterday -80: today's balance 20, but 2 days ago it was 100.
    assert await codes(db, [posting("L2", "100.00", "C", days_back=3), posting("L2", "80.00", "D", days_back=1)]) \
        == ["R000", "R000"]
    late = posting("L2", "30.00", "D", days_back=2)
    assert await codes(db, [late]) == ["R028"]
    [callback] = await last_callbacks(db)
    assert (callback["available"], callback["shortfall"], callback["breakday"]) == \
        ("20.00", "10.00", (TODAY - timedelta(days=1)).isoformat())
    assert await codes(db, [posting("L2", "20.00", "D", days_back=2)]) == ["R000"]


async def test_batch_order_decides_within_a_batch_and_credits_are_never_refused_for_funds(db):
    await AccountRegistry(db).open("0001", "L3", limit=D("10.00"))
    batch = [posting("L3", "10.00", "D"), posting("L3", "0.01", "D"), posting("L3", "5.00", "C"),
             posting("L3", "5.00", "D"), posting("L3", "999.00", "C", days_back=1)]
    assert await codes(db, batch) == ["R000", "R028", "R000", "R000", "R000"]
    callbacks = await last_callbacks(db)
    # every applied posting's callback: the account's balance after the batch (999 - 10 + 5 - 5)
    assert {c["balance"] for c in callbacks if c["code"] == "R000"} == {"989.00"}
    assert {c["available"] for c in callbacks if c["code"] == "R000"} == {"999.00"}


async def test_forced_debits_pass_the_limit_but_not_a_block(db):
    accounts = AccountRegistry(db)
    await accounts.open("0001", "L4", limit=D("0.00"))
    assert await codes(db, [posting("L4", "70.00", "D", eventcode=FORCED)]) == ["R000"]
    assert await codes(db, [posting("L4", "1.00", "D")]) == ["R028"]
    await accounts.block("0001", "L4", debits=True, credits=False, reason="court")
    assert await codes(db, [posting("L4", "1.00", "D", eventcode=FORCED), posting("L4", "1.00", "C")]) \
        == ["R025", "R000"]


async def test_blocks_close_and_lowering_a_limit(db):
    accounts = AccountRegistry(db)
    await accounts.open("0001", "L5", limit=D("50.00"))
    assert await codes(db, [posting("L5", "40.00", "D")]) == ["R000"]
    await accounts.change("0001", "L5", limit=D("10.00"))  # below today's -40: nothing applied moves
    assert (await balance_rows(db))[("L5", TODAY)][2] == D("40.00")
    assert await codes(db, [posting("L5", "0.01", "D"), posting("L5", "1.00", "C")]) == ["R028", "R000"]
    await accounts.block("0001", "L5", debits=False, credits=True, reason="review")
    assert await codes(db, [posting("L5", "1.00", "C")]) == ["R026"]
    await accounts.unblock("0001", "L5", debits=True, credits=True, reason="cleared")
    with pytest.raises(FlowError) as not_zero:
        await accounts.close("0001", "L5", reason="customer left")
    assert not_zero.value.code is Code.ACCOUNT_NOT_AT_ZERO
    assert await codes(db, [posting("L5", "39.00", "C")]) == ["R000"]
    closed = await accounts.close("0001", "L5", reason="customer left")
    assert closed.status == "closed"
    assert await codes(db, [posting("L5", "1.00", "C"), posting("L5", "1.00", "D", eventcode=FORCED)]) \
        == ["R027", "R027"]
    for change in (accounts.change("0001", "L5", limit=None), accounts.open("0001", "L5")):
        with pytest.raises(FlowError):
            await change


async def test_unknown_accounts_open_on_first_posting_or_are_refused(db):
    assert await codes(db, [posting("U1", "5.00", "D")]) == ["R000"]  # today's behaviour: no row, no limit
    [callback] = await last_callbacks(db)
    assert (callback["balance"], callback["available"]) == ("-5.00", None)
    assert await codes(db, [posting("U2", "5.00", "C"), posting("U1", "5.00", "C")], reject_unknown=True) \
        == ["R029", "R029"]
    # An account opened by its first posting can be given a limit later: it is registered then, as it was.
    registered = await AccountRegistry(db).change("0001", "U1", limit=D("0.00"))
    assert (registered.status, registered.limit) == ("active", "0.00")
    assert await codes(db, [posting("U1", "1.00", "D"), posting("U1", "1.00", "C")], reject_unknown=True) \
        == ["R028", "R000"]


async def test_an_admin_change_that_wins_the_race_to_the_lock_makes_the_batch_try_again(db):
    """A batch takes the account for unruled in step 2; a limit set before the batch gets the lock
    must still judge it: the batch fails as a serialization failure (retried by the consumer)."""
    key = account_lock_key("0001", "R1")
    holder = await db.connect()
    await holder.begin()
    await holder.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    batch = [posting("R1", "5.00", "D")]
    racing = asyncio.create_task(apply(db, batch))
    await asyncio.sleep(0.5)  # the batch records its outcome, then waits for the lock
    await holder.execute(text("INSERT INTO flow.account (branch, account, overdraftlimit, tracekey, updatetracekey) "
                              "VALUES ('0001', 'R1', 0, gen_random_uuid(), gen_random_uuid())"))
    await holder.commit()
    await holder.close()
    with pytest.raises(DBAPIError) as raised:
        await racing
    assert is_transient(raised.value)
    assert await codes(db, batch) == ["R028"]  # tried again: judged under the lock


@pytest.mark.parametrize(("change", "retried", "decided"), [
    ("UPDATE flow.account SET overdraftlimit = 10 WHERE account = 'R2'", True, "R028"),  # lowered: judged anew
    ("UPDATE flow.account SET status = 'blocked', blockdebit = true WHERE account = 'R2'", True, "R025"),
    ("UPDATE flow.account SET overdraftlimit = 500 WHERE account = 'R3'", False, "R000"),  # another account's
])
async def test_a_ruled_accounts_change_that_wins_the_race_to_the_lock(db, change, retried, decided):
    """A batch judges a ruled account on the registry row it read in step 2, and the day rows it reads
    with the locks. A change to that row committed before the batch gets the lock makes it try again;
    a change to another account's row (the registry's version moves too) does not."""
    accounts = AccountRegistry(db)
    await accounts.open("0001", "R2", limit=D("100.00"))
    await accounts.open("0001", "R3", limit=D("0.00"))
    holder = await db.connect()
    await holder.begin()
    await holder.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": account_lock_key("0001", "R2")})
    batch = [posting("R2", "50.00", "D")]
    racing = asyncio.create_task(apply(db, batch))
    await asyncio.sleep(0.5)  # the batch records its outcome and reads the registry, then waits for the lock
    await holder.execute(text(change))
    await holder.commit()
    await holder.close()
    if retried:
        with pytest.raises(DBAPIError) as raised:
            await racing
        assert is_transient(raised.value)
        assert await balance_rows(db) == {}  # the failed batch changed nothing
        assert await codes(db, batch) == [decided]  # tried again: judged on the row as it is now
    else:
        assert [o.code.value for o in await racing] == [decided]


async def test_a_refused_posting_redelivered_stays_refused_and_an_applied_one_applied(db):
    await AccountRegistry(db).open("0001", "L6", limit=D("0.00"))
    first = [posting("L6", "5.00", "D"), posting("L6", "5.00", "C")]
    assert await codes(db, first) == ["R028", "R000"]
    assert await codes(db, [first[1], first[0], posting("L6", "5.00", "D")]) == ["R000", "R028", "R000"]
    assert await codes(db, [first[0]]) == ["R028"]


# -- property: accounts, statuses, limits and forced debits, any batch split, equal the reference -----

_ACCOUNTS = ["A1", "A2", "A3"]
_posting = st.tuples(st.just("post"), st.sampled_from(["new"] * 5 + ["redeliver", "forced"]),
                     st.sampled_from(_ACCOUNTS), st.integers(1, 20_000).map(lambda c: D(c) / 100),
                     st.sampled_from("DDC"), st.integers(0, 7))
_admin = st.tuples(st.just("admin"), st.sampled_from(["open", "open", "limit", "nolimit", "block", "unblock", "close"]),
                   st.sampled_from(_ACCOUNTS), st.integers(0, 20_000).map(lambda c: D(c) / 100),
                   st.sampled_from(["D", "C", "DC"]), st.just(0))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.one_of(_posting, _posting, _posting, _admin), min_size=12, max_size=40),
       cuts=st.randoms(use_true_random=False), reject_unknown=st.booleans())
def test_accounts_in_any_batch_split_match_the_reference(fresh_database, steps, cuts, reject_unknown):
    branch = f"Q{uuid.uuid4().hex[:8]}"
    model = ReferenceAccounts(TODAY, reject_unknown)

    async def admin(accounts: AccountRegistry, kind, account, amount, sides) -> None:
        """The change through the admin API's registry, and the same change in the model when it stands."""
        row = model.registry.get((branch, account))
        try:
            if kind == "open":
                await accounts.open(branch, account, limit=amount)
            elif kind in ("limit", "nolimit"):
                await accounts.change(branch, account, limit=amount if kind == "limit" else None)
            elif kind in ("block", "unblock"):
                await getattr(accounts, kind)(branch, account, "D" in sides, "C" in sides, reason="test")
            else:
                await accounts.close(branch, account, reason="test")
        except FlowError:
            return
        if row is None:  # opened now (or registered as it was, with no limit)
            row = model.registry[(branch, account)] = Registered(limit=amount if kind == "open" else None)
        if kind == "limit":
            row.limit = amount
        elif kind == "nolimit":
            row.limit = None
        elif kind in ("block", "unblock"):
            on = kind == "block"
            row.blockdebit = on if "D" in sides else row.blockdebit
            row.blockcredit = on if "C" in sides else row.blockcredit
            row.status = "blocked" if row.blockdebit or row.blockcredit else "active"
        elif kind == "close":
            row.status, row.blockdebit, row.blockcredit = "closed", False, False

    async def run():
        engine = create_engine(fresh_database, 2)
        accounts = AccountRegistry(engine)
        sent, got, want = [], [], []
        batch: list = []

        async def flush():
            while batch:
                size = cuts.randint(1, len(batch))
                part = batch[:size]
                del batch[:size]
                async with engine.begin() as conn:
                    outcomes = await apply_batch(conn, part, 7, reject_unknown=reject_unknown)
                for message, outcome in zip(part, outcomes):
                    code, figures = model.decide(
                        Posted(str(message.id), branch, message.account, message.amount, message.debitcredit,
                               message.dateref), forced=message.eventcode == FORCED)
                    want.append(code)
                    got.append(outcome.code.value)
                    if figures:
                        async with engine.connect() as conn:
                            stored = (await conn.execute(text(
                                "SELECT available, shortfall, breakday FROM flow.outcome WHERE id = :id"),
                                {"id": message.id})).one()
                        assert tuple(stored) == (figures["available"], figures["shortfall"], figures["breakday"])

        try:
            for step in steps:
                if step[0] == "admin":
                    await flush()  # admin changes land between batches, as the lock orders them
                    await admin(accounts, *step[1:5])
                    continue
                _, kind, account, amount, side, days_back = step
                if kind == "redeliver" and sent:
                    message = cuts.choice(sent)
                else:
                    message = posting(account=account, amount=f"{amount:.2f}", debitcredit=side,
                                      days_back=days_back, branch=branch,
                                      eventcode=FORCED if kind == "forced" else 1)
                    if kind == "forced":
                        message = message.model_copy(update={"debitcredit": "D"})
                sent.append(message)
                batch.append(message)
            await flush()
            assert got == want
            await assert_matches_reference(engine, model.ledger, branch)
        finally:
            await engine.dispose()

    asyncio.run(run())


# -- concurrency: parallel appliers racing debits on one hot account with a limit ----------------------

APPLIERS = 4


async def test_parallel_appliers_on_a_hot_limited_account_decide_as_the_model(fresh_database):
    rng = random.Random("hot-limit")
    branch = f"H{uuid.uuid4().hex[:8]}"
    db = create_engine(fresh_database, APPLIERS + 2)
    await AccountRegistry(db).open(branch, "HOT", limit=D("500.00"))
    sent = [posting(account="HOT", branch=branch, amount=f"{rng.randrange(1, 20_000) / 100:.2f}",
                    debitcredit=rng.choice("DDC"), days_back=rng.choice([0, 0, 0, 1, 2, 5, 7]),
                    eventcode=FORCED if rng.random() < 0.05 else 1) for _ in range(1500)]
    sent = [p.model_copy(update={"debitcredit": "D"}) if p.eventcode == FORCED else p for p in sent]
    deliveries = sent + rng.sample(sent, len(sent) // 3)
    queue = [deliveries[n:n + 40] for n in range(0, len(deliveries), 40)]
    rng.shuffle(queue)
    async with db.begin() as conn:
        await conn.execute(text("CREATE SEQUENCE flow.test_lock_order"))
    decided: list[tuple[int, list, list]] = []

    async def applier() -> None:
        while queue:
            part = queue.pop()
            # No retry here: a deadlock or serialization failure fails the test.
            async with db.begin() as conn:
                outcomes = await apply_batch(conn, part, 7)
                # Taken while the batch holds the account's lock: the order batches were judged in.
                order = (await conn.execute(text("SELECT nextval('flow.test_lock_order')"))).scalar()
            decided.append((order, part, outcomes))

    try:
        await asyncio.gather(*(applier() for _ in range(APPLIERS)))
        model = ReferenceAccounts(TODAY)
        model.registry[(branch, "HOT")] = Registered(limit=D("500.00"))
        refused = 0
        for _, part, outcomes in sorted(decided, key=lambda d: d[0]):
            for message, outcome in zip(part, outcomes):
                code, _ = model.decide(Posted(str(message.id), branch, "HOT", message.amount, message.debitcredit,
                                              message.dateref), forced=message.eventcode == FORCED)
                assert outcome.code.value == code, (message, code)
                refused += code == "R028"
        assert refused > 50  # the limit really was in play
        await assert_matches_reference(db, model.ledger, branch)
    finally:
        await db.dispose()
