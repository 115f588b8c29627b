"""Unit tests of the posting rules shared by ingest and the engine."""

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from flow_rules.codes import Code
from flow_rules.fingerprint import fingerprint
from flow_rules.judge import EventFlags, judge
from flow_rules.posting import PostingIn, validation_code

VALID = {"branch": "0001", "account": "000000001", "amount": "10.50", "debitcredit": "D", "eventcode": 1,
         "dateref": "2026-11-20"}


def code_for(**change) -> Code:
    body = {**VALID, **change}
    body = {k: v for k, v in body.items() if v is not ...}
    with pytest.raises(ValidationError) as caught:
        PostingIn.model_validate(body)
    return validation_code(caught.value.errors())


def test_a_valid_posting_parses_money_exactly():
    posting = PostingIn.model_validate({**VALID, "amount": "0.10"})
    assert posting.amount == Decimal("0.1") and str(posting.amount) == "0.10"
    assert PostingIn.model_validate({**VALID, "amount": "9999999999999.99"}).amount == Decimal("9999999999999.99")


def test_money_as_a_json_number_is_refused():
    """A JSON number has passed through a binary float in most clients: amounts are strings only."""
    assert code_for(amount=0.1) is Code.INVALID_AMOUNT
    assert code_for(amount=10) is Code.INVALID_AMOUNT


@pytest.mark.parametrize(("change", "code"), [
    ({"branch": "00-1"}, Code.INVALID_BRANCH),
    ({"branch": ""}, Code.INVALID_BRANCH),
    ({"branch": "12345678901"}, Code.INVALID_BRANCH),
    ({"account": "0001 "}, Code.INVALID_ACCOUNT),
    ({"account": "1" * 21}, Code.INVALID_ACCOUNT),
    ({"amount": "0"}, Code.INVALID_AMOUNT),
    ({"amount": "-1.00"}, Code.INVALID_AMOUNT),
    ({"amount": "1.001"}, Code.INVALID_AMOUNT),
    ({"amount": "10000000000000.00"}, Code.INVALID_AMOUNT),
    ({"amount": "NaN"}, Code.INVALID_AMOUNT),
    ({"amount": "abc"}, Code.INVALID_AMOUNT),
    ({"debitcredit": "X"}, Code.INVALID_DEBITCREDIT),
    ({"debitcredit": "d"}, Code.INVALID_DEBITCREDIT),
    ({"eventcode": 0}, Code.INVALID_EVENTCODE),
    ({"eventcode": "one"}, Code.INVALID_EVENTCODE),
    ({"dateref": "20/11/2026"}, Code.INVALID_DATEREF),
    ({"tracekey": "not-a-uuid"}, Code.INVALID_TRACEKEY),
    ({"id": "42"}, Code.INVALID_ID),
    ({"details": [1, 2]}, Code.INVALID_DETAILS),
    ({"description": "x" * 201}, Code.INVALID_DESCRIPTION),
    ({"colour": "red"}, Code.UNKNOWN_FIELD),
    ({"branch": ...}, Code.INVALID_BRANCH),
])
def test_each_invalid_field_gets_its_own_code(change, code):
    assert code_for(**change) is code


def test_the_retroactive_window_is_judged_against_acceptance():
    accepted = datetime(2026, 11, 24, 23, 59, tzinfo=UTC)
    event = EventFlags(active=True, allowdebit=True, allowcredit=True, forced=False)
    assert judge(event, "D", date(2026, 11, 24), accepted, 7) is None
    assert judge(event, "D", date(2026, 11, 17), accepted, 7) is None
    assert judge(event, "D", date(2026, 11, 16), accepted, 7) is Code.DATEREF_TOO_OLD
    assert judge(event, "D", date(2026, 11, 25), accepted, 7) is Code.DATEREF_IN_FUTURE


def test_the_event_is_judged_before_the_date():
    accepted, old = datetime(2026, 11, 24, tzinfo=UTC), date(2026, 1, 1)
    assert judge(None, "C", old, accepted, 7) is Code.EVENT_NOT_FOUND
    assert judge(EventFlags(False, True, True, False), "C", old, accepted, 7) is Code.EVENT_INACTIVE
    assert judge(EventFlags(True, False, True, False), "D", old, accepted, 7) is Code.EVENT_DISALLOWS_DEBIT
    assert judge(EventFlags(True, False, True, False), "C", old, accepted, 7) is Code.DATEREF_TOO_OLD
    assert judge(EventFlags(True, True, False, False), "C", old, accepted, 7) is Code.EVENT_DISALLOWS_CREDIT


def test_the_fingerprint_ignores_tracekey_and_amount_spelling_but_not_content():
    a = PostingIn.model_validate({**VALID, "amount": "10.50", "tracekey": "7d1c8c9e-3c4e-4a43-9d38-7c8f3b1f6e01"})
    b = PostingIn.model_validate({**VALID, "amount": Decimal("10.5")})  # FLOW's own objects: one value, one print
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(PostingIn.model_validate({**VALID, "amount": "10.51"}))
    assert fingerprint(a) != fingerprint(PostingIn.model_validate({**VALID, "details": {"k": 1}}))


def test_codes_are_unique_and_stable():
    values = [c.value for c in Code]
    assert len(values) == len(set(values))
    assert Code.APPLIED.value == "R000" and Code.ID_REUSED.value == "R030"


def test_every_code_is_in_the_readme_table():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert [c.value for c in Code if f"| {c.value} |" not in readme] == []
