"""Entitlements (FLOW_ENTITLEMENTS) on the account registry: the admin API refuses a client not entitled
to the account's branch with 403 R076 and changes nothing; query's account history answers only a
client entitled to the branch. Ingest and query run in-process with entitlements of their own, as in
tests/test_entitlements.py."""

import uuid

import pytest

from tests.test_entitlements import mint, service

ENTITLEMENTS = {"partner-a": {"branches": ["0001"]}, "partner-all": {"branches": ["*"]}}
ADMIN = ("flow.admin", "flow.read")


def _account() -> str:
    return f"E{uuid.uuid4().hex[:12]}"


def _registry_rows(stack, account: str) -> tuple[str, str]:
    """The account's registry row and audit trail as the primary holds them (text, to compare)."""
    registry = stack.postgres.query(f"SELECT status, overdraftlimit, holder, updatedat FROM flow.account "
                                    f"WHERE account = '{account}'", database="flow")
    trail = stack.postgres.query(f"SELECT count(*) FROM flow.account_audit WHERE account = '{account}'",
                                 database="flow")
    return registry, trail


@pytest.mark.parametrize("branch", ["0002", "0001"])
async def test_the_admin_api_refuses_other_branches_r076_and_changes_nothing(stack, branch):
    account = _account()
    async with service(stack, "ingest", ENTITLEMENTS) as ingest:
        everywhere = {"authorization": f"Bearer {mint(stack, 'partner-all', *ADMIN)}"}
        partner = {"authorization": f"Bearer {mint(stack, 'partner-a', *ADMIN)}"}
        stranger = {"authorization": f"Bearer {mint(stack, 'stranger', *ADMIN)}"}  # unlisted, no default: nothing
        opened = await ingest.post("/v1/accounts", json={"branch": "0002", "account": account, "limit": "10.00"},
                                   headers=everywhere)
        assert opened.status_code == 201, opened.text
        before = _registry_rows(stack, account)
        url = f"/v1/accounts/{branch}/{account}"
        changes = [("post", "/v1/accounts", {"branch": branch, "account": account}),
                   ("patch", url, {"limit": "99.00"}),
                   ("post", f"{url}/block", {"reason": "x"}),
                   ("post", f"{url}/unblock", {"reason": "x"}),
                   ("post", f"{url}/close", {"reason": "x"})]
        refused_clients = [partner, stranger] if branch == "0002" else [stranger]
        for headers in refused_clients:
            for method, path, change in changes:
                answer = await getattr(ingest, method)(path, json=change, headers=headers)
                assert (answer.status_code, answer.json()["code"]) == (403, "R076"), (method, path, answer.text)
            # Judged before the body: a body the API would refuse gets the same answer.
            answer = await ingest.patch(url, json={"limit": 1}, headers=headers)
            assert (answer.status_code, answer.json()["code"]) == (403, "R076"), answer.text
        assert _registry_rows(stack, account) == before
        if branch == "0001":  # partner-a's own branch: allowed (nothing registered there under that name)
            answer = await ingest.patch(url, json={"limit": "1.00"}, headers=partner)
            assert (answer.status_code, answer.json()["code"]) == (404, "R082"), answer.text
            opened = await ingest.post("/v1/accounts", json={"branch": "0001", "account": account}, headers=partner)
            assert opened.status_code == 201, opened.text


async def test_without_the_setting_the_admin_api_checks_nothing(stack):
    async with service(stack, "ingest", entitlements=None) as ingest:
        answer = await ingest.post("/v1/accounts", json={"branch": "0002", "account": _account()},
                                   headers={"authorization": f"Bearer {mint(stack, 'partner-a', *ADMIN)}"})
        assert answer.status_code == 201, answer.text


async def test_the_account_history_answers_only_clients_entitled_to_the_branch(stack):
    account = _account()
    async with service(stack, "ingest", ENTITLEMENTS) as ingest:
        everywhere = {"authorization": f"Bearer {mint(stack, 'partner-all', *ADMIN)}"}
        for branch in ("0001", "0002"):
            opened = await ingest.post("/v1/accounts", json={"branch": branch, "account": account}, headers=everywhere)
            assert opened.status_code == 201, opened.text
    stack.wait_for_replica()
    async with service(stack, "query", ENTITLEMENTS) as query:
        partner = {"authorization": f"Bearer {mint(stack, 'partner-a', 'flow.read')}"}
        answer = await query.get(f"/v1/accounts/0002/{account}/history", headers=partner)
        assert (answer.status_code, answer.json()["code"]) == (403, "R076"), answer.text
        answer = await query.get(f"/v1/accounts/0001/{account}/history", headers=partner)
        assert answer.status_code == 200, answer.text
        [opened] = answer.json()["items"]
        assert (opened["change"], opened["caller"]) == ("open", {"sub": "partner-all-sp", "client": "partner-all"})
