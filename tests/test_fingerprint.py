"""The posting's fingerprint (flow_rules.fingerprint): one function, computed once at ingest and carried
in the message, and every stored form still recognised, so old outcomes and ingest's old request rows
still tell a redelivery (or a retry) from an id reused for other content."""

import json
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import text

from flow_engine.message import decode
from flow_kit.db import create_engine
from flow_rules.codes import Code
from flow_rules.fingerprint import first_form, fingerprint, same_content
from flow_rules.posting import PostingIn
from tests.engine_helpers import apply, balance_rows, posting

# Fingerprints of these contents as released FLOW stored them: `stored` as the engine computed it in
# SQL (0005 on; flow.outcome), `first` as ingest (flow.request) and the oldest engines did in Python.
# Computed with the code of 5740457; a change to either form breaks every stored value, and this.
VECTORS = [
    ({"branch": "0001", "account": "000000001", "amount": "10.50", "debitcredit": "D", "eventcode": 1,
      "dateref": "2026-11-20"},
     "780bf818-b719-09a9-74b2-fd7ec6714dde", "000a9984-2544-33ec-918e-bcc03e31cbd2"),
    ({"branch": "A1", "account": "Zz9", "amount": "9999999999999.99", "debitcredit": "C", "eventcode": 2147483647,
      "dateref": "2026-02-28", "description": "Café ☕ \u2028 \"quoted\" =",
      "details": {"b": [1, 2.5, None, True], "a": {"ü": "x\ny"}}},
     "64216e20-bfce-be60-70d9-f9082aa0c15f", "8284cfa9-2aa7-9c66-e72f-d4a38298afec"),
    ({"branch": "0002", "account": "1", "amount": "0.01", "debitcredit": "C", "eventcode": 7, "dateref": "2026-11-29",
      "description": "", "details": {}},
     "875e066d-6a41-1b31-2ecf-e643bb6cf37b", "c952bcd0-a9cb-211d-2063-753af4ba2de2"),
]

# The expression the engine hashed content with in SQL before the message carried the fingerprint.
_SQL_FORM = text(
    """SELECT md5(concat_ws(chr(31), CAST(:branch AS text), CAST(:account AS text),
                            CAST(:amount AS numeric)::numeric(15,2)::text, CAST(:debitcredit AS text),
                            CAST(:eventcode AS int)::text, coalesce('=' || CAST(:description AS text), chr(30)),
                            coalesce('=' || CAST(:details AS text), chr(30)), CAST(:dateref AS date)::text))::uuid"""
)


@pytest.mark.parametrize(("content", "stored", "first"), VECTORS)
def test_both_stored_forms_of_released_fingerprints_are_recognised(content, stored, first):
    posting_in = PostingIn.model_validate(content)
    assert str(fingerprint(posting_in)) == stored
    assert str(first_form(posting_in)) == first
    assert same_content(fingerprint(posting_in), posting_in) and same_content(first_form(posting_in), posting_in)
    other = PostingIn.model_validate({**content, "amount": "0.02"})
    assert not same_content(fingerprint(posting_in), other) and not same_content(first_form(posting_in), other)


def test_the_fingerprint_leaves_out_only_what_a_retry_may_change():
    base = PostingIn.model_validate(VECTORS[1][0])
    retried = PostingIn.model_validate({**VECTORS[1][0], "tracekey": "7d1c8c9e-3c4e-4a43-9d38-7c8f3b1f6e01",
                                        "details": {"a": {"ü": "x\ny"}, "b": [1, 2.5, None, True]}})
    assert fingerprint(retried) == fingerprint(base)  # another tracekey, the details' keys in another order
    for change in ({"branch": "A2"}, {"account": "Zz8"}, {"amount": "9999999999999.98"}, {"debitcredit": "D"},
                   {"eventcode": 2}, {"dateref": "2026-02-27"}, {"description": None}, {"description": "Café"},
                   {"details": None}, {"details": {}}, {"description": "", "details": None}):
        assert fingerprint(PostingIn.model_validate({**VECTORS[1][0], **change})) != fingerprint(base), change
    # An absent description is not an empty one, nor a description that spells the separators.
    bare = {**VECTORS[0][0]}
    assert len({fingerprint(PostingIn.model_validate({**bare, **change})) for change in (
        {}, {"description": ""}, {"details": {}}, {"description": "\x1e"}, {"description": "=\x1f"})}) == 5


async def test_the_python_fingerprint_equals_the_form_sql_computed(fresh_database):
    """For contents far from the vectors too: every outcome the engine stored from 0005 on holds this form."""
    contents = [{**VECTORS[1][0], "description": description, "details": details, "amount": amount}
                for description in (None, "", "a\x1fb", "ção 𝄞 \\ '", "=")
                for details in (None, {}, {"z": 1, "a": [{"ß": None}]}, {"n": 12345678901234567890})
                for amount in ("0.01", "120.00", "1234567.89")]
    db = create_engine(fresh_database, 1)
    try:
        async with db.connect() as conn:
            for content in contents:
                posting_in = PostingIn.model_validate(content)
                details = None if posting_in.details is None else json.dumps(
                    posting_in.details, sort_keys=True, separators=(",", ":"))
                sql = (await conn.execute(_SQL_FORM, {**content, "details": details,
                                                      "dateref": date.fromisoformat(content["dateref"])})).scalar()
                assert sql == fingerprint(posting_in), content
    finally:
        await db.dispose()


@pytest.fixture
async def db(fresh_database):
    engine = create_engine(fresh_database, 2)
    yield engine
    await engine.dispose()


@pytest.mark.parametrize("form", [fingerprint, first_form])
async def test_outcomes_stored_in_either_form_tell_a_redelivery_from_a_reuse(db, form):
    earlier, reused = posting(amount="7.00", details={"b": 1, "a": [1, 2]}), posting(amount="8.00")
    async with db.begin() as conn:
        await conn.execute(text(
            "INSERT INTO flow.outcome (id, tracekey, fingerprint, code, dateref) VALUES (:id, :tracekey, :print, 'R000', "
            ":day)"), [{"id": p.id, "tracekey": p.tracekey, "print": form(p), "day": p.dateref} for p in (earlier, reused)])
    carried = earlier.model_copy(update={"fingerprint": fingerprint(earlier)})  # as ingest sends it now
    queued = decode(carried.model_dump_json())  # as the engine reads it off the queue: the fingerprint as text
    outcomes = await apply(db, [earlier, reused.model_copy(update={"amount": Decimal("9.00")}), carried, queued])
    assert [o.code for o in outcomes] == [Code.APPLIED, Code.ID_REUSED, Code.APPLIED, Code.APPLIED]
    assert await balance_rows(db) == {}  # the redeliveries changed nothing


async def test_the_engine_stores_the_fingerprint_the_message_carries(db):
    carried, old = posting(amount="3.00"), posting(amount="4.00")  # `old`: a message from before it travelled
    carried = carried.model_copy(update={"fingerprint": fingerprint(carried)})
    assert old.fingerprint is None
    await apply(db, [carried, old])
    async with db.connect() as conn:
        stored = dict((await conn.execute(text("SELECT id, fingerprint FROM flow.outcome"))).all())
    assert stored == {carried.id: fingerprint(carried), old.id: fingerprint(old)}
