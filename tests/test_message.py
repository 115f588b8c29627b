"""The engine's msgspec decoder keeps PostingMessage's rules (pydantic, which ingest validates with).

Two properties, on bodies with random and hostile field values:
- nothing the engine accepts is refused by PostingMessage, and the values agree (so no value that
  PostgreSQL could refuse reaches a batch);
- on the JSON types ingest writes, everything PostingMessage accepts the engine accepts (so no good
  posting is sent to the dead-letter queue).
"""

import json
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from flow_engine.message import DecodeError, decode
from flow_rules.posting import PostingMessage

FIELDS = ("id", "tracekey", "branch", "account", "amount", "debitcredit", "eventcode", "dateref", "acceptedat",
          "description", "details")
VALID = {"id": "0e1c3b6a-7e2f-4c1a-9d3b-2f5e8a7c6b4d", "tracekey": "5b0c2f3e-8a1d-4e6f-9c7b-1a2d3e4f5a6b",
         "branch": "0001", "account": "000000042", "amount": "150.25", "debitcredit": "D", "eventcode": 1,
         "dateref": "2026-11-20", "acceptedat": "2026-11-24T10:00:00.123456Z", "description": "rent",
         "details": {"origin": "app", "n": 1}}

_uuid_text = st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()), st.uuids().map(lambda u: u.hex),
                       st.text(max_size=40))
_decimal_text = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.decimals(min_value=Decimal("-1E+15"), max_value=Decimal("1E+15"), places=3).map(str),
    st.sampled_from(["150.2500", "1E+2", "1e1", "0.001", "0.010", "-0", "0.00", "9999999999999.99", "1E+13",
                     "10000000000000", "1_000", " 1.5", "1.5 ", "+1", ".5", "5.", "0x10", "", "1,5", "١٢"]),
    st.text(max_size=20),
)
_field_values = {
    "id": _uuid_text,
    "tracekey": _uuid_text,
    "branch": st.one_of(st.from_regex(r"\A[A-Za-z0-9]{1,10}\Z"), st.text(max_size=12),
                        st.sampled_from(["0001\n", "0001 ", "", "ÄÖ01", "０００１"])),
    "account": st.one_of(st.from_regex(r"\A[A-Za-z0-9]{1,20}\Z"), st.text(max_size=22), st.just("000000042\n")),
    "amount": st.one_of(_decimal_text, st.integers(-10, 10**16), st.floats(allow_nan=False, allow_infinity=False)),
    "debitcredit": st.sampled_from(["D", "C", "d", "c", "X", "", "DC", "D\n"]),
    "eventcode": st.one_of(st.integers(-3, 2**32), st.sampled_from(["1", 1.0, 1.5, True, None])),
    "dateref": st.one_of(st.dates().map(str), st.text(max_size=12),
                         st.sampled_from(["2026-02-30", "2026-11-24T00:00:00", "20261124", 20261124])),
    "acceptedat": st.one_of(
        st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3)), None])).map(datetime.isoformat),
        st.sampled_from(["2026-11-24T10:00:00Z", "2026-11-24 10:00:00+00:00", "2026-11-24", "2026-11-24T25:00:00Z",
                         1_700_000_000]),
        st.text(max_size=30)),
    "description": st.one_of(st.none(), st.text(max_size=205), st.just("a\x00b"), st.just("x" * 200),
                             st.just("é" * 201)),
    "details": st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5)),
        max_size=4), st.just([1, 2]), st.just("x")),
}


@st.composite
def bodies(draw) -> dict:
    """A body with a few fields changed to random values, sometimes one missing or one unknown."""
    body = dict(VALID)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        body[name] = draw(_field_values[name])
    if draw(st.integers(0, 9)) == 0:
        body.pop(draw(st.sampled_from(FIELDS)))
    if draw(st.integers(0, 19)) == 0:
        body["colour"] = "red"
    return body


def _pydantic(raw: str) -> PostingMessage | None:
    try:
        return PostingMessage.model_validate_json(raw)
    except ValidationError:
        return None


def _engine(raw: str):
    try:
        return decode(raw)
    except DecodeError:
        return None


def _same_values(engine, model: PostingMessage) -> None:
    for name in FIELDS:
        assert getattr(engine, name) == getattr(model, name), name
        assert type(getattr(engine, name)) is type(getattr(model, name)), name


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies())
def test_what_the_engine_accepts_pydantic_accepts_with_the_same_values(body):
    raw = json.dumps(body)
    engine = _engine(raw)
    if engine is not None:
        model = _pydantic(raw)
        assert model is not None, f"engine accepted what PostingMessage refuses: {raw}"
        _same_values(engine, model)


def _ingest_typed(body: dict) -> bool:
    """Whether every value has the JSON type and form ingest writes: strings for ids, money and dates
    (a date as YYYY-MM-DD, a time as date and time), an int code."""
    strings = ("id", "tracekey", "branch", "account", "amount", "debitcredit", "dateref", "acceptedat")
    return (all(isinstance(body.get(name, ""), str) for name in strings)
            and type(body.get("eventcode", 1)) is int
            and re.fullmatch(r"\d{4}-\d{2}-\d{2}", body.get("dateref", "2026-11-24")) is not None
            and re.match(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", body.get("acceptedat", "2026-11-24T10:00")) is not None)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies())
def test_what_pydantic_accepts_in_ingests_json_types_the_engine_accepts(body):
    raw = json.dumps(body)
    model = _pydantic(raw)
    if model is not None and _ingest_typed(body):
        engine = _engine(raw)
        assert engine is not None, f"engine refused a posting PostingMessage accepts: {raw}"
        _same_values(engine, model)


@given(st.builds(PostingMessage, id=st.uuids(), tracekey=st.uuids(), branch=st.from_regex(r"\A[A-Za-z0-9]{1,10}\Z"),
                 account=st.from_regex(r"\A[A-Za-z0-9]{1,20}\Z"),
                 amount=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9999999999999.99"), places=2),
                 debitcredit=st.sampled_from(["D", "C"]), eventcode=st.integers(1, 2**31 - 1),
                 description=st.one_of(st.none(), st.text(max_size=200).filter(lambda s: "\x00" not in s)),
                 details=st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)),
                 dateref=st.dates(), acceptedat=st.datetimes(timezones=st.just(UTC))))
def test_every_message_ingest_publishes_decodes_to_the_same_posting(message):
    _same_values(decode(message.model_dump_json()), message)


@pytest.mark.parametrize("change", [
    {"branch": "0001\n"}, {"amount": "1.001"}, {"amount": "NaN"}, {"amount": "Infinity"}, {"amount": "0.00"},
    {"amount": "10000000000000"}, {"amount": "1E+13"}, {"description": "a\x00b"}, {"description": "x" * 201},
    {"eventcode": 0}, {"eventcode": 2**31}, {"debitcredit": "d"}, {"dateref": "2026-02-30"}, {"colour": "red"},
    {"id": "not-a-uuid"}, {"fingerprint": "not-a-uuid"}, {"fingerprint": "0E1C3B6A-7E2F-4C1A-9D3B-2F5E8A7C6B4D"},
    {"fingerprint": "0e1c3b6a7e2f4c1a9d3b2f5e8a7c6b4d"}, {"fingerprint": "0e1c3b6a-7e2f-4c1a-9d3b-2f5e8a7c6b4d\n"},
])
def test_the_engine_refuses_what_postgresql_or_the_rules_would(change):
    with pytest.raises(DecodeError):
        decode(json.dumps({**VALID, **change}))


def test_the_fingerprint_is_kept_in_the_form_ingest_writes():
    message = PostingMessage.model_validate({**VALID, "fingerprint": uuid.UUID(VALID["id"])})
    assert decode(message.model_dump_json()).fingerprint == VALID["id"]


def test_money_keeps_its_exact_value():
    assert decode(json.dumps({**VALID, "amount": "150.2500"})).amount == Decimal("150.25")
    assert decode(json.dumps({**VALID, "amount": 0.1})).amount == Decimal("0.1")
    assert decode(json.dumps({**VALID, "amount": "1E+2"})).amount == 100
    posting = decode(json.dumps(VALID))
    assert posting.id == uuid.UUID(VALID["id"]) and posting.acceptedat.tzinfo is not None
