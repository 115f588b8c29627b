"""The account registry through the public APIs: the admin endpoints and their codes, every apply-time
rule and its code in the callback and the query answer, the figures clients read, and the account as
query answers it."""

import uuid
from datetime import UTC, datetime

import httpx
import pytest

from flow_rules.codes import Code
from tests.waiting import wait_until_async
from tools.devstack.processes import free_port, stop

TODAY = datetime.now(UTC).date().isoformat()


def _posting(branch: str, account: str, amount: str, debitcredit: str, eventcode: int = 1) -> dict:
    return {"branch": branch, "account": account, "amount": amount, "debitcredit": debitcredit,
            "eventcode": eventcode, "dateref": TODAY, "tracekey": str(uuid.uuid4())}


async def _post_all(http, ingest_url: str, callbacks, postings: list[dict]) -> list[dict]:
    """Posts one at a time (so the engine sees them in this order) and returns each one's callback."""
    for posting in postings:
        accepted = await http.post(f"{ingest_url}/v1/transactions", json=posting)
        assert accepted.status_code == 202, accepted.text
        seen = await callbacks.collect({posting["tracekey"]}, timeout=60)
        assert posting["tracekey"] in seen, posting
    return [callbacks_for(callbacks, p["tracekey"]) for p in postings]


def callbacks_for(callbacks, tracekey: str) -> dict:
    return next(m for m in callbacks.messages if m["tracekey"] == tracekey)


async def _account(http, query_url: str, branch: str, account: str, balance: str) -> dict:
    """The account as query answers it, once the replica has the balance expected."""
    answer = await wait_until_async(lambda: http.get(f"{query_url}/v1/accounts/{branch}/{account}"),
                                    f"{branch}/{account} with balance {balance}", 10, interval=0.1,
                                    holds=lambda a: a.status_code == 200 and a.json()["balance"] == balance,
                                    describe=lambda a: a.text)
    return answer.json()


async def test_an_account_with_a_limit_through_the_apis(ingest_url, query_url, http, callbacks):
    branch, account = f"B{uuid.uuid4().hex[:6]}", "000000001"
    opened = await http.post(f"{ingest_url}/v1/accounts", json={"branch": branch, "account": account,
                                                                 "limit": "100.00", "holder": "H-1"})
    assert opened.status_code == 201, opened.text
    assert (opened.json()["status"], opened.json()["limit"], opened.json()["holder"]) == ("active", "100.00", "H-1")
    again = await http.post(f"{ingest_url}/v1/accounts", json={"branch": branch, "account": account})
    assert (again.status_code, again.json()["code"]) == (409, "R081")

    credit, too_much, to_the_limit = (_posting(branch, account, "50.00", "C"), _posting(branch, account, "150.01", "D"),
                                      _posting(branch, account, "150.00", "D"))
    answers = await _post_all(http, ingest_url, callbacks, [credit, too_much, to_the_limit])
    assert [a["code"] for a in answers] == ["R000", "R028", "R000"]
    assert (answers[0]["balance"], answers[0]["available"]) == ("50.00", "150.00")
    assert (answers[1]["status"], answers[1]["available"], answers[1]["shortfall"], answers[1]["breakday"]) == \
        ("rejected", "150.00", "0.01", TODAY)
    assert (answers[2]["balance"], answers[2]["available"]) == ("-100.00", "0.00")

    read = await _account(http, query_url, branch, account, "-100.00")
    assert (read["registered"], read["status"], read["limit"], read["available"]) == (True, "active", "100.00", "0.00")
    assert isinstance(read["replica_lag_seconds"], float)
    refused = (await http.get(f"{query_url}/v1/transactions/{answers[1]['id']}")).json()
    assert (refused["code"], refused["available"], refused["shortfall"], refused["breakday"]) == \
        ("R028", "150.00", "0.01", TODAY)
    # Read by its tracekey, the refusal carries the same figures: the same answer as by id.
    by_tracekey = await http.get(f"{query_url}/v1/transactions", params={"tracekey": too_much["tracekey"]})
    assert by_tracekey.status_code == 200 and by_tracekey.json()["items"] == [refused], by_tracekey.text
    applied = await http.get(f"{query_url}/v1/transactions", params={"tracekey": credit["tracekey"]})
    assert [(i["code"], i["available"], i["shortfall"], i["breakday"]) for i in applied.json()["items"]] == \
        [("R000", None, None, None)]

    # A forced debit (the demo's court order, event 5) passes the limit.
    [forced] = await _post_all(http, ingest_url, callbacks, [_posting(branch, account, "25.00", "D", eventcode=5)])
    assert (forced["code"], forced["balance"], forced["available"]) == ("R000", "-125.00", "-25.00")
    lowered = await http.patch(f"{ingest_url}/v1/accounts/{branch}/{account}", json={"nolimit": True})
    assert lowered.status_code == 200 and lowered.json()["limit"] is None


async def test_blocks_and_close_through_the_apis(ingest_url, query_url, http, callbacks):
    branch, account = f"B{uuid.uuid4().hex[:6]}", "000000002"
    assert (await http.post(f"{ingest_url}/v1/accounts", json={"branch": branch, "account": account,
                                                                "limit": None})).status_code == 201
    blocked = await http.post(f"{ingest_url}/v1/accounts/{branch}/{account}/block",
                              json={"debits": True, "credits": False, "reason": "fraud review"})
    assert (blocked.json()["status"], blocked.json()["blockdebit"], blocked.json()["reason"]) == \
        ("blocked", True, "fraud review")
    answers = await _post_all(http, ingest_url, callbacks, [
        _posting(branch, account, "5.00", "D"), _posting(branch, account, "5.00", "D", eventcode=5),
        _posting(branch, account, "5.00", "C")])
    assert [a["code"] for a in answers] == ["R025", "R025", "R000"]
    await http.post(f"{ingest_url}/v1/accounts/{branch}/{account}/block",
                    json={"debits": False, "credits": True, "reason": "all"})
    [credit] = await _post_all(http, ingest_url, callbacks, [_posting(branch, account, "5.00", "C")])
    assert credit["code"] == "R026"
    unblocked = await http.post(f"{ingest_url}/v1/accounts/{branch}/{account}/unblock",
                                json={"reason": "cleared"})
    assert (unblocked.json()["status"], unblocked.json()["blockdebit"], unblocked.json()["blockcredit"]) == \
        ("active", False, False)
    not_zero = await http.post(f"{ingest_url}/v1/accounts/{branch}/{account}/close", json={"reason": "left"})
    assert (not_zero.status_code, not_zero.json()["code"]) == (409, "R083")
    [debit] = await _post_all(http, ingest_url, callbacks, [_posting(branch, account, "5.00", "D")])
    assert (debit["code"], debit["balance"], debit["available"]) == ("R000", "0.00", None)
    closed = await http.post(f"{ingest_url}/v1/accounts/{branch}/{account}/close", json={"reason": "left"})
    assert (closed.status_code, closed.json()["status"]) == (200, "closed")
    answers = await _post_all(http, ingest_url, callbacks, [_posting(branch, account, "5.00", "C")])
    assert answers[0]["code"] == "R027"
    for path, change in (("", {"limit": "1.00"}), ("/block", {"reason": "x"}), ("/close", {"reason": "x"})):
        refused = await (http.patch if not path else http.post)(f"{ingest_url}/v1/accounts/{branch}/{account}{path}",
                                                                 json=change)
        assert (refused.status_code, refused.json()["code"]) == (409, "R084")
    read = await _account(http, query_url, branch, account, "0.00")
    assert (read["status"], read["reason"], read["limit"], read["available"]) == ("closed", "left", None, None)


async def test_an_account_opened_by_its_first_posting_and_unknown_ones(ingest_url, query_url, http, callbacks):
    branch, account = f"B{uuid.uuid4().hex[:6]}", "000000003"
    missing = await http.get(f"{query_url}/v1/accounts/{branch}/{account}")
    assert (missing.status_code, missing.json()["code"]) == (404, "R082")
    for path, method in (("", "patch"), ("/block", "post"), ("/close", "post")):
        answer = await getattr(http, method)(f"{ingest_url}/v1/accounts/{branch}/{account}{path}",
                                             json={"limit": "1.00"} if not path else {"reason": "x"})
        assert (answer.status_code, answer.json()["code"]) == (404, "R082")
    [debit] = await _post_all(http, ingest_url, callbacks, [_posting(branch, account, "7.00", "D")])
    assert (debit["code"], debit["balance"], debit["available"]) == ("R000", "-7.00", None)
    read = await _account(http, query_url, branch, account, "-7.00")
    assert (read["registered"], read["status"], read["limit"], read["createdat"]) == (False, "active", None, None)
    # The engine opened it without writing the registry: nothing in its trail.
    unaudited = await http.get(f"{query_url}/v1/accounts/{branch}/{account}/history")
    assert (unaudited.status_code, unaudited.json()["items"]) == (200, []), unaudited.text
    limited = await http.patch(f"{ingest_url}/v1/accounts/{branch}/{account}", json={"limit": "0.00"})
    assert (limited.status_code, limited.json()["limit"]) == (200, "0.00")
    # Registered as it was (no limit), then changed: two entries, both the admin's.
    trail = await _history(http, query_url, branch, account, 2)
    assert [(c["change"], c["before"], c["after"]) for c in trail] == [
        ("open", None, {"status": "active", "blockdebit": False, "blockcredit": False, "limit": None, "holder": None}),
        ("change", {"limit": None}, {"limit": "0.00"})]
    assert (trail[0]["tracekey"], trail[1]["tracekey"]) == (limited.json()["tracekey"],
                                                            limited.json()["updatetracekey"])
    [refused] = await _post_all(http, ingest_url, callbacks, [_posting(branch, account, "0.01", "D")])
    assert (refused["code"], refused["available"], refused["shortfall"]) == ("R028", "-7.00", "7.01")


async def _history(http, query_url: str, branch: str, account: str, changes: int) -> list[dict]:
    """The account's trail as query answers it, once the replica has its `changes` entries."""
    answer = await wait_until_async(lambda: http.get(f"{query_url}/v1/accounts/{branch}/{account}/history"),
                                    f"{branch}/{account} with {changes} changes", 10, interval=0.1,
                                    holds=lambda a: a.status_code == 200 and len(a.json()["items"]) == changes,
                                    describe=lambda a: a.text)
    assert answer.json()["next_cursor"] is None
    return answer.json()["items"]


async def test_every_registry_change_is_audited_with_who_when_what_and_why(stack, ingest_url, query_url, http):
    branch, account = f"B{uuid.uuid4().hex[:6]}", "000000006"
    url = f"{ingest_url}/v1/accounts/{branch}/{account}"
    answers = [await http.post(f"{ingest_url}/v1/accounts", json={"branch": branch, "account": account,
                                                                   "limit": "100.00", "holder": "H-9"}),
               await http.patch(url, json={"limit": "250.00"}),
               await http.patch(url, json={"holder": "H-10"}),
               await http.post(f"{url}/block", json={"debits": True, "credits": False, "reason": "fraud review"}),
               await http.post(f"{url}/unblock", json={"reason": "cleared"}),
               await http.post(f"{url}/close", json={"reason": "left"})]
    assert [a.status_code for a in answers] == [201, 200, 200, 200, 200, 200], [a.text for a in answers]
    refused = await http.post(f"{url}/close", json={"reason": "again"})  # refused: changes nothing
    assert (refused.status_code, refused.json()["code"]) == (409, "R084")

    trail = await _history(http, query_url, branch, account, 6)
    assert [(c["change"], c["reason"], c["before"], c["after"]) for c in trail] == [
        ("open", None, None,
         {"status": "active", "blockdebit": False, "blockcredit": False, "limit": "100.00", "holder": "H-9"}),
        ("change", None, {"limit": "100.00"}, {"limit": "250.00"}),
        ("change", None, {"holder": "H-9"}, {"holder": "H-10"}),
        ("block", "fraud review", {"status": "active", "blockdebit": False}, {"status": "blocked", "blockdebit": True}),
        ("unblock", "cleared", {"status": "blocked", "blockdebit": True}, {"status": "active", "blockdebit": False}),
        ("close", "left", {"status": "active"}, {"status": "closed"})]
    admin = {"sub": stack.issuer.client_id, "client": stack.issuer.client_id}
    assert all(c["caller"] == admin for c in trail)
    assert [c["tracekey"] for c in trail] == [answers[0].json()["tracekey"]] + \
        [a.json()["updatetracekey"] for a in answers[1:]]
    assert [c["changedat"] for c in trail] == sorted(c["changedat"] for c in trail)
    assert trail[-1]["changedat"] == answers[-1].json()["updatedat"]

    # A page at a time: the same trail.
    pages, cursor = [], None
    while True:
        page = (await http.get(f"{query_url}/v1/accounts/{branch}/{account}/history",
                               params={"limit": 4, **({"cursor": cursor} if cursor else {})})).json()
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [4, 2] and [c for p in pages for c in p] == trail
    for bad in ("nope", trail[0]["tracekey"], pages[0][0]["tracekey"] + ".x"):
        answer = await http.get(f"{query_url}/v1/accounts/{branch}/{account}/history", params={"cursor": bad})
        assert (answer.status_code, answer.json()["code"]) == (422, "R043"), answer.text


@pytest.fixture
def rejecting_engine(stack):
    """For the test, an engine with FLOW_ENGINE_UNKNOWN_ACCOUNTS=reject in place of the stack's (which
    refuse nothing for it): the queue drained and the stack's engines stopped first, restarted after
    the test, however it ends."""
    stack.drain()
    ports = [stack.config.engine_port] + [free_port() for _ in stack.engines[1:]]
    for proc in list(stack.engines):
        stack.engines.remove(proc)
        stop(proc)
    settings = stack.config.engine_settings
    rejecting = None
    try:
        stack.config.engine_settings = {**settings, "UNKNOWN_ACCOUNTS": "reject"}
        try:
            rejecting = stack.start_engine(free_port())
        finally:
            stack.config.engine_settings = settings
        yield rejecting
    finally:
        if rejecting is not None:
            stack.engines.remove(rejecting)
            stop(rejecting)
        for port in ports:
            stack.start_engine(port)


async def test_unknown_accounts_refused_r029_through_the_apis(rejecting_engine, ingest_url, query_url, http,
                                                              callbacks):
    branch = f"B{uuid.uuid4().hex[:6]}"
    registered, unknown = "000000004", "000000005"
    assert (await http.post(f"{ingest_url}/v1/accounts", json={"branch": branch, "account": registered,
                                                                "limit": None})).status_code == 201
    postings = [_posting(branch, registered, "5.00", "C"), _posting(branch, unknown, "5.00", "C")]
    applied, refused = await _post_all(http, ingest_url, callbacks, postings)
    assert (applied["status"], applied["code"], applied["balance"]) == ("applied", "R000", "5.00")
    assert (refused["status"], refused["code"], refused["message"]) == \
        ("rejected", "R029", Code.ACCOUNT_UNKNOWN.message)

    read = await wait_until_async(lambda: http.get(f"{query_url}/v1/transactions/{refused['id']}"),
                                  "the refusal on the replica", 10, interval=0.1,
                                  holds=lambda a: a.status_code == 200, describe=lambda a: a.text)
    assert (read.json()["status"], read.json()["code"], read.json()["message"], read.json()["tracekey"]) == \
        ("rejected", "R029", Code.ACCOUNT_UNKNOWN.message, postings[1]["tracekey"])
    by_tracekey = (await http.get(f"{query_url}/v1/transactions", params={"tracekey": postings[1]["tracekey"]})).json()
    assert by_tracekey["items"] == [read.json()]
    found = (await http.get(f"{query_url}/v1/transactions/{applied['id']}")).json()
    assert (found["status"], found["code"], found["account"]) == ("applied", "R000", registered)
    missing = await http.get(f"{query_url}/v1/accounts/{branch}/{unknown}")
    assert (missing.status_code, missing.json()["code"]) == (404, "R082")  # nothing of it was applied


@pytest.mark.parametrize(("path", "method", "body", "status", "code"), [
    ("/v1/accounts", "post", {"branch": "0001", "account": "1", "limit": "1.5"}, 422, "R080"),
    ("/v1/accounts", "post", {"branch": "0001", "account": "1", "limit": 10}, 422, "R080"),
    ("/v1/accounts", "post", {"branch": "0001", "account": "1", "limit": "-1.00"}, 422, "R080"),
    ("/v1/accounts", "post", {"branch": "00-1", "account": "1"}, 422, "R002"),
    ("/v1/accounts", "post", {"branch": "0001", "account": "x" * 21}, 422, "R003"),
    ("/v1/accounts", "post", {"branch": "0001", "account": "1", "colour": "red"}, 422, "R012"),
    ("/v1/accounts/0001/1", "patch", {"limit": "1.00", "nolimit": True}, 422, "R080"),
    ("/v1/accounts/0001/1/block", "post", {"debits": False, "credits": False, "reason": "x"}, 422, "R080"),
    ("/v1/accounts/0001/1/block", "post", {"debits": True}, 422, "R080"),
    ("/v1/accounts/0001/1/close", "post", {"reason": ""}, 422, "R080"),
    ("/v1/accounts/0-1/1/close", "post", {"reason": "x"}, 422, "R002"),
])
async def test_account_changes_are_validated_with_their_codes(ingest_url, http, path, method, body, status, code):
    answer = await getattr(http, method)(f"{ingest_url}{path}", json=body)
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text


async def test_account_changes_need_the_admin_scope(ingest_url, token):
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {token('flow.write', 'flow.read')}"}) as client:
        answer = await client.post(f"{ingest_url}/v1/accounts", json={"branch": "0001", "account": "1"})
    assert (answer.status_code, answer.json()["code"]) == (403, "R075")
