"""Inputs are parsed strictly: every value has exactly the JSON type the API documents, in one
canonical form, and nothing is coerced (README, API: accepted forms). Hostile spellings of each field
are refused with the field's code, through the public APIs (nothing published), and at the model."""

import json
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from flow_rules.codes import Code
from flow_kit.errors import NonFinite, strict_loads
from flow_rules.fingerprint import fingerprint
from flow_rules.posting import PostingIn, PostingMessage, validation_code

TODAY = datetime.now(UTC).date().isoformat()
ID = "0e1c3b6a-7e2f-4c1a-9d3b-2f5e8a7c6b4d"


def fields(**change) -> dict:
    """A good posting's fields as JSON texts, with `change` given as raw JSON texts."""
    good = {"branch": '"0005"', "account": '"000000001"', "amount": '"10.00"', "debitcredit": '"C"',
            "eventcode": "1", "dateref": json.dumps(TODAY), "tracekey": json.dumps(str(uuid.uuid4()))}
    return {**good, **change}


def raw(parts: dict, extra: str = "") -> str:
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in parts.items()) + extra + "}"


# (field: raw JSON text) -> code. Each was accepted (coerced, or read in a lenient form) before.
HOSTILE = [
    ({"eventcode": "true"}, "R006"),
    ({"eventcode": '"1"'}, "R006"),
    ({"eventcode": "1.0"}, "R006"),
    ({"eventcode": "1e0"}, "R006"),
    ({"amount": '"1e3"'}, "R004"),
    ({"amount": '"1E+3"'}, "R004"),
    ({"amount": '"+10.00"'}, "R004"),
    ({"amount": '"  10.00 "'}, "R004"),
    ({"amount": '"10.00\\n"'}, "R004"),
    ({"amount": '"010.00"'}, "R004"),
    ({"amount": '"10."'}, "R004"),
    ({"amount": '".5"'}, "R004"),
    ({"amount": '"1_000"'}, "R004"),
    ({"amount": '"\\uff11\\uff10"'}, "R004"),  # fullwidth digits
    ({"amount": "10"}, "R004"),
    ({"amount": "10.5"}, "R004"),
    ({"amount": "0.1"}, "R004"),
    ({"amount": '"10"'}, "R004"),  # one canonical form: exactly two decimals
    ({"amount": '"10.5"'}, "R004"),
    ({"amount": '"10.500"'}, "R004"),
    ({"dateref": f'"{TODAY}T00:00:00"'}, "R013"),
    ({"dateref": '"2026-02-30"'}, "R013"),
    ({"dateref": "1700000000"}, "R013"),
    ({"dateref": '"1700000000"'}, "R013"),
    ({"dateref": f'"{TODAY.replace("-", "")}"'}, "R013"),
    ({"id": '"{' + ID + '}"'}, "R011"),
    ({"id": '"urn:uuid:' + ID + '"'}, "R011"),
    ({"id": '"' + ID.replace("-", "") + '"'}, "R011"),
    ({"id": '"' + ID.upper() + '"'}, "R011"),
    ({"tracekey": '"{' + ID + '}"'}, "R009"),
    ({"tracekey": '"' + ID.replace("-", "") + '"'}, "R009"),
    ({"tracekey": '"' + ID.upper() + '"'}, "R009"),
    ({"debitcredit": '["C"]'}, "R005"),
    ({"debitcredit": "true"}, "R005"),
    ({"branch": "5"}, "R002"),
    ({"account": "1"}, "R003"),
    ({"description": "5"}, "R014"),
    ({"description": "true"}, "R014"),
    ({"details": '{"x": NaN}'}, "R010"),
    ({"details": '{"x": Infinity}'}, "R010"),
    ({"details": '{"x": [-Infinity]}'}, "R010"),
    ({"details": '{"x": 1e400}'}, "R010"),
    ({"details": '{"x": 1e-400}'}, "R010"),
    ({"details": '{"x": 1' + "0" * 400 + "}"}, "R010"),
    ({"details": '{"x": ' + "[" * 40 + "]" * 40 + "}"}, "R010"),  # nested deeper than 32
    ({"amount": "NaN"}, "R004"),
    ({"eventcode": "Infinity"}, "R006"),
    ({"eventcode": "1" + "0" * 400}, "R006"),
]


@pytest.mark.parametrize(("change", "code"), HOSTILE, ids=[f"{k}={v[:20]}" for (c, _) in HOSTILE for k, v in c.items()])
async def test_a_hostile_value_is_refused_with_its_code_and_publishes_nothing(ingest_url, http, requests_topic,
                                                                              change, code):
    sent = fields(**change)
    response = await http.post(f"{ingest_url}/v1/transactions", content=raw(sent),
                               headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code, response.text
    good = fields()
    assert (await http.post(f"{ingest_url}/v1/transactions", content=raw(good),
                            headers={"content-type": "application/json"})).status_code == 202
    tracekey, good_tracekey = json.loads(sent["tracekey"]), json.loads(good["tracekey"])
    seen = await requests_topic.collect({good_tracekey}, timeout=30)
    assert good_tracekey in seen and tracekey not in seen


@pytest.mark.parametrize("body", [
    raw(fields(), ', "amount": "11.00"'),  # a key twice: json.loads would keep the last value
    raw(fields(details='{"a": 1, "a": 2}')),
    raw(fields(details='{"a": {"b": [{"c": 1, "c": 1}]}}')),
])
@pytest.mark.parametrize("path", ["/v1/transactions", "/v1/transactions/batch"])
async def test_a_key_twice_in_one_object_is_not_json_flow_reads(ingest_url, http, requests_topic, body, path):
    content = body if path == "/v1/transactions" else '{"items": [' + body + "]}"
    response = await http.post(f"{ingest_url}{path}", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    answer = response.json()
    assert (answer["code"], answer["message"]) == ("R019", "request body is not valid JSON")
    assert content[answer["position"]] == '"'  # where the repeated key starts
    assert content[answer["position"]:].startswith(('"amount"', '"a"', '"c"'))


async def test_a_key_twice_in_the_batch_body_itself_is_refused(ingest_url, http):
    content = '{"items": [' + raw(fields()) + '], "items": [' + raw(fields()) + "]}"
    response = await http.post(f"{ingest_url}/v1/transactions/batch", content=content,
                               headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["code"] == "R019"


@pytest.mark.parametrize("content", [b'{"branch": "0001", "account": "\xff"}', b"\xef\xbb\xbf{}",
                                     b'{"details": ' + b"[" * 5000 + b"]" * 5000 + b"}"])
async def test_a_body_that_is_not_utf8_json_is_refused_as_not_json(ingest_url, http, content):
    response = await http.post(f"{ingest_url}/v1/transactions", content=content,
                               headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "R019" and isinstance(response.json()["position"], int)


@pytest.mark.parametrize("content", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize("path", ["/v1/transactions", "/v1/transactions/batch", "/v1/events"])
async def test_a_body_that_is_only_a_non_finite_number_is_not_json(ingest_url, http, content, path):
    response = await http.post(f"{ingest_url}{path}", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json() == {"code": "R019", "message": "request body is not valid JSON", "position": 0}


async def test_a_batch_judges_each_hostile_item_with_its_code(ingest_url, http, callbacks):
    hostile = [(change, code) for change, code in HOSTILE if code not in ("R010",)][:20] + \
        [({"details": '{"x": NaN}'}, "R010"), ({"details": '{"x": 1e400}'}, "R010")]
    good = fields(account='"000000903"')
    items = [raw(fields(**change)) for change, _ in hostile] + [raw(good), "NaN"]
    response = await http.post(f"{ingest_url}/v1/transactions/batch", content='{"items": [' + ", ".join(items) + "]}",
                               headers={"content-type": "application/json"})
    assert response.status_code == 202, response.text
    out = response.json()
    assert [i["code"] for i in out["items"]] == [code for _, code in hostile] + [None, "R001"]
    assert (out["accepted"], out["rejected"]) == (1, len(hostile) + 1)
    seen = await callbacks.collect({json.loads(good["tracekey"])}, timeout=60)
    assert seen[json.loads(good["tracekey"])][0]["status"] == "applied"


@pytest.mark.parametrize("amount", ["10.00", "10.50", "0.01", "9999999999999.99"])
async def test_canonical_amounts_are_accepted_and_published_with_two_places(ingest_url, http, requests_topic, amount):
    sent = fields(amount=json.dumps(amount), id=json.dumps(str(uuid.uuid4())))
    response = await http.post(f"{ingest_url}/v1/transactions", content=raw(sent),
                               headers={"content-type": "application/json"})
    assert response.status_code == 202, response.text
    tracekey = json.loads(sent["tracekey"])
    (message,) = (await requests_topic.collect({tracekey}, timeout=30))[tracekey]
    assert message["amount"] == str(Decimal(amount).quantize(Decimal("0.01")))


@pytest.mark.parametrize(("body", "code"), [
    ({"description": "x", "active": 1}, "R017"),
    ({"description": "x", "active": "true"}, "R017"),
    ({"description": "x", "allowdebit": 0}, "R017"),
    ({"description": "x", "allowcredit": "false"}, "R017"),
    ({"description": 5}, "R017"),
    ({"description": "x", "code": "7"}, "R006"),
    ({"description": "x", "code": 7.0}, "R006"),
    ({"description": "x", "code": True}, "R006"),
])
async def test_events_take_json_booleans_integers_and_strings_only(ingest_url, http, body, code):
    response = await http.post(f"{ingest_url}/v1/events", json=body)
    assert response.status_code == 422 and response.json()["code"] == code, response.text
    response = await http.patch(f"{ingest_url}/v1/events/1", json={k: v for k, v in body.items() if k != "code"})
    if "code" not in body:
        assert response.status_code == 422 and response.json()["code"] == code, response.text


@pytest.mark.parametrize("code", ["+1", "01", "1.0", "%201", "1e0", "0x1"])
async def test_an_event_code_in_a_path_is_plain_decimal_digits(ingest_url, query_url, http, code):
    response = await http.patch(f"{ingest_url}/v1/events/{code}", json={"active": True})
    assert response.status_code == 422 and response.json()["code"] == "R006", response.text
    response = await http.get(f"{query_url}/v1/events/{code}")
    assert response.status_code == 422 and response.json()["code"] == "R006", response.text


async def test_a_duplicate_key_in_an_event_is_refused(ingest_url, http):
    response = await http.patch(f"{ingest_url}/v1/events/1", content='{"active": false, "active": true}',
                                headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["code"] == "R019"


@pytest.mark.parametrize(("path", "code"), [
    (f"/v1/transactions/{ID.upper()}", "R011"),
    (f"/v1/transactions/{ID.replace('-', '')}", "R011"),
    (f"/v1/transactions/%7B{ID}%7D", "R011"),
    (f"/v1/transactions/urn:uuid:{ID}", "R011"),
    (f"/v1/transactions?tracekey={ID.upper()}", "R009"),
    (f"/v1/transactions?tracekey={ID.replace('-', '')}", "R009"),
    (f"/v1/transactions?tracekey={ID}&limit=+5", "R044"),
    (f"/v1/transactions?tracekey={ID}&limit=%205", "R044"),
    (f"/v1/transactions?tracekey={ID}&limit=05", "R044"),
    (f"/v1/transactions?tracekey={ID}&limit=5.0", "R044"),
    (f"/v1/transactions?tracekey={ID}&limit=1_0", "R044"),
    ("/v1/accounts/0001/000000001/statement?limit=-1", "R044"),
    ("/v1/accounts/0001/000000001/statement?limit=1e2", "R044"),
    ("/v1/accounts/0001/000000001/statement?from=2026-01-01T00:00:00&to=2026-01-02", "R041"),
    ("/v1/accounts/0001/000000001/statement?to=20260102", "R041"),
    ("/v1/accounts/0001/000000001/balances?from=1767225600", "R041"),
    ("/v1/accounts/0001/000000001/balances?to=2026-1-2", "R041"),
    ("/v1/accounts/0001/000000001/balance?date=2026-01-02T00:00:00", "R041"),
    ("/v1/accounts/0001/000000001/balance?date=%202026-01-02", "R041"),
    ("/v1/accounts/0001/000000001/balance?date=2026-02-30", "R041"),
    ("/v1/accounts/0001/000000001/statement?limit=5&limit=500", "R042"),
    ("/v1/accounts/0001/000000001/balance?date=2026-01-02&date=2026-01-03", "R042"),
    ("/v1/accounts/0001/000000001/balance?colour=red", "R042"),
])
async def test_query_parameters_have_one_canonical_form(query_url, http, path, code):
    response = await http.get(f"{query_url}{path}")
    assert response.status_code == 422 and response.json()["code"] == code, response.text


async def test_a_statement_cursor_must_be_exactly_what_the_api_wrote(ingest_url, query_url, http, callbacks):
    account = f"{uuid.uuid4().int % 10**9:09d}"
    items = [json.loads(raw(fields(account=json.dumps(account)))) for _ in range(3)]
    assert (await http.post(f"{ingest_url}/v1/transactions/batch", json={"items": items})).json()["accepted"] == 3
    await callbacks.collect({i["tracekey"] for i in items}, timeout=60)
    page = (await http.get(f"{query_url}/v1/accounts/0005/{account}/statement", params={"limit": 1})).json()
    cursor = page["next_cursor"]
    assert (await http.get(f"{query_url}/v1/accounts/0005/{account}/statement",
                           params={"limit": 1, "cursor": cursor})).status_code == 200
    for tampered in (cursor + "!", "!" + cursor, cursor + "=="):
        response = await http.get(f"{query_url}/v1/accounts/0005/{account}/statement",
                                  params={"limit": 1, "cursor": tampered})
        assert response.status_code == 422 and response.json()["code"] == "R043", tampered


async def test_canonical_query_parameters_are_accepted(query_url, http):
    response = await http.get(f"{query_url}/v1/transactions", params={"tracekey": ID, "limit": "1000"})
    assert response.status_code == 200, response.text
    response = await http.get(f"{query_url}/v1/accounts/0001/000000001/statement",
                              params={"from": "2026-01-01", "to": "2026-01-31", "limit": "7"})
    assert response.status_code == 200, response.text
    assert (await http.get(f"{query_url}/v1/transactions/{ID}")).json()["code"] == "R040"


async def test_a_500_posting_batch_is_parsed_about_as_fast_as_by_json_loads(ingest_url, http, report):
    items = [json.loads(raw(fields(details='{"origin": "bench", "n": 1, "ok": true}'))) for _ in range(500)]
    content = json.dumps({"items": items}).encode()
    strict, plain = [], []
    for _ in range(30):  # interleaved, the best of each: the machine is busy with the stack
        started = time.perf_counter()
        strict_loads(content)
        strict.append(time.perf_counter() - started)
        started = time.perf_counter()
        json.loads(content)
        plain.append(time.perf_counter() - started)
    started = time.perf_counter()
    response = await http.post(f"{ingest_url}/v1/transactions/batch", content=content,
                               headers={"content-type": "application/json"})
    took = time.perf_counter() - started
    assert response.status_code == 202 and response.json()["accepted"] == 500
    report(f"500-posting batch: strict JSON parse {min(strict) * 1000:.2f} ms (json.loads {min(plain) * 1000:.2f} ms), "
           f"whole request {took * 1000:.0f} ms")
    assert min(strict) < 2 * min(plain) + 0.001


# Model level: the same rules without the service.

BODY = {"branch": "0001", "account": "000000001", "amount": "10.50", "debitcredit": "D", "eventcode": 1,
        "dateref": "2026-11-20"}


@pytest.mark.parametrize(("change", "code"), [
    ({"eventcode": True}, Code.INVALID_EVENTCODE),
    ({"eventcode": "1"}, Code.INVALID_EVENTCODE),
    ({"eventcode": 1.0}, Code.INVALID_EVENTCODE),
    ({"eventcode": NonFinite("NaN")}, Code.INVALID_EVENTCODE),
    ({"amount": 10}, Code.INVALID_AMOUNT),
    ({"amount": 10.5}, Code.INVALID_AMOUNT),
    ({"amount": "1e3"}, Code.INVALID_AMOUNT),
    ({"amount": "0.00"}, Code.INVALID_AMOUNT),
    ({"amount": "10000000000000"}, Code.INVALID_AMOUNT),
    ({"amount": "10.505"}, Code.INVALID_AMOUNT),
    ({"dateref": "2026-11-30T00:00:00"}, Code.INVALID_DATEREF),
    ({"dateref": datetime(2026, 11, 30)}, Code.INVALID_DATEREF),
    ({"id": ID.upper()}, Code.INVALID_ID),
    ({"tracekey": ID.replace("-", "")}, Code.INVALID_TRACEKEY),
    ({"details": {"x": float("nan")}}, Code.INVALID_DETAILS),
    ({"details": {"x": NonFinite("Infinity")}}, Code.INVALID_DETAILS),
    ({"details": {"x": "\ud800"}}, Code.INVALID_DETAILS),
    ({"branch": 1}, Code.INVALID_BRANCH),
])
def test_the_model_refuses_each_hostile_form_with_its_code(change, code):
    with pytest.raises(ValidationError) as caught:
        PostingIn.model_validate({**BODY, **change})
    assert validation_code(caught.value.errors()) is code


def test_the_model_reads_the_canonical_forms():
    posting = PostingIn.model_validate({**BODY, "id": ID, "amount": "10.50", "details": {"n": 0.5, "big": 10**300}})
    assert posting.amount == Decimal("10.50") and str(posting.amount) == "10.50"
    assert posting.id == uuid.UUID(ID) and posting.dateref == date(2026, 11, 20)
    assert fingerprint(posting) == fingerprint(PostingIn.model_validate({**BODY, "id": ID, "amount": "10.50",
                                                                         "details": {"n": 0.5, "big": 10**300}}))


def test_what_ingest_publishes_and_old_queue_messages_still_read_as_postings():
    posting = PostingIn.model_validate(strict_loads(json.dumps({**BODY, "id": ID, "amount": "10.00"})))
    message = PostingMessage(**posting.model_dump(exclude={"id", "tracekey"}), id=posting.id, tracekey=uuid.uuid4(),
                             acceptedat=datetime.now(UTC))
    assert json.loads(message.model_dump_json())["amount"] == "10.00"
    old = {**BODY, "id": ID.upper(), "tracekey": ID, "amount": "1E+2", "acceptedat": "2026-11-24T10:00:00Z"}
    assert PostingMessage.model_validate_json(json.dumps(old)).amount == 100


def test_strict_loads_refuses_repeated_keys_and_marks_non_finite_numbers():
    with pytest.raises(json.JSONDecodeError) as caught:
        strict_loads(b'{"a": {"b": 1, "b": 2}}')
    assert caught.value.pos == 15
    values = strict_loads(b'[NaN, Infinity, -Infinity, 1e400, -1e400, 1e-400, 0.0, 0e7, -0, 5e-324, 1.5, '
                          b'18446744073709551616]')
    assert [type(v) for v in values[:6]] == [NonFinite] * 6
    assert values[6:] == [0.0, 0.0, 0, 5e-324, 1.5, 18446744073709551616] and type(values[-1]) is int
    with pytest.raises(json.JSONDecodeError):
        strict_loads(b'"\xc3\x28"')
