"""Every caller known: who posted is kept with each posting and outcome and answered by the query API;
every change to the event catalogue leaves an append-only audit row (flow.event_audit) that the
application's role cannot rewrite."""

import json
import uuid
from datetime import date

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from flow_engine.apply import apply_batch
from flow_engine.message import decode
from flow_kit.db import create_engine
from flow_rules.posting import Caller
from tests.app_role import connected_as_app_role
from tests.engine_helpers import posting

CLIENT = "flow-dev"  # the dev issuer's client: its tokens' azp


@pytest.fixture
async def caller(stack):
    """A client of FLOW's APIs whose token names a subject of the test's own (azp: the dev client)."""
    sub = f"user-{uuid.uuid4().hex[:10]}"
    token = stack.issuer.mint(("flow.read", "flow.write", "flow.admin"), sub=sub)
    async with httpx.AsyncClient(timeout=30, headers={"authorization": f"Bearer {token}"}) as client:
        yield sub, client


def _rows(stack, sql: str) -> list[list[str]]:
    out = stack.postgres.query(sql, database="flow")
    return [line.split("|") for line in out.splitlines()]


async def test_a_posting_keeps_its_caller_in_the_ledger_and_the_query_api(stack, caller, ingest_url, query_url,
                                                                          callbacks):
    sub, client = caller
    body = {"branch": "0001", "account": "callers1", "amount": "12.34", "debitcredit": "C", "eventcode": 1,
            "dateref": date.today().isoformat()}
    accepted = await client.post(f"{ingest_url}/v1/transactions", json=body)
    assert accepted.status_code == 202, accepted.text
    id_, tracekey = accepted.json()["id"], accepted.json()["tracekey"]
    seen = await callbacks.collect({tracekey}, timeout=60)
    assert seen[tracekey][0]["code"] == "R000"

    read = (await client.get(f"{query_url}/v1/transactions/{id_}")).json()
    assert read["status"] == "applied"
    assert read["caller"] == {"sub": sub, "client": CLIENT}
    (found,) = (await client.get(f"{query_url}/v1/transactions", params={"tracekey": tracekey})).json()["items"]
    assert found["caller"] == {"sub": sub, "client": CLIENT}

    assert _rows(stack, f"SELECT callersub, callerclient FROM flow.transaction WHERE id = '{id_}'") == [[sub, CLIENT]]
    assert _rows(stack, f"SELECT callersub, callerclient FROM flow.outcome WHERE id = '{id_}'") == [[sub, CLIENT]]


async def test_catalogue_changes_leave_audit_rows_with_before_after_and_the_caller(stack, caller, ingest_url):
    sub, client = caller
    created = await client.post(f"{ingest_url}/v1/events", json={"description": "Audited", "allowcredit": False})
    assert created.status_code == 201, created.text
    code = created.json()["code"]
    changed = await client.patch(f"{ingest_url}/v1/events/{code}", json={"active": False, "description": "Audited 2"})
    assert changed.status_code == 200, changed.text

    rows = _rows(stack, "SELECT callersub, callerclient, coalesce(before::text, 'null'), after::text "
                        f"FROM flow.event_audit WHERE code = {code} ORDER BY id")
    assert len(rows) == 2
    (sub1, client1, before1, after1), (sub2, client2, before2, after2) = rows
    assert (sub1, client1, sub2, client2) == (sub, CLIENT, sub, CLIENT)
    assert json.loads(before1) is None
    assert json.loads(after1)["description"] == "Audited" and json.loads(after1)["allowcredit"] is False
    assert json.loads(before2) == json.loads(after1)
    after2 = json.loads(after2)
    assert (after2["description"], after2["active"], after2["code"]) == ("Audited 2", False, code)


async def test_the_app_role_cannot_rewrite_the_catalogue_audit(stack, fresh_database):
    """With flow_app's grants (SELECT, INSERT, UPDATE, DELETE on every table), on a database and a role
    of the test's own: its catalogue changes are audited, with the caller it names; the trail is not
    rewritten, deleted nor truncated."""
    async with connected_as_app_role(stack, fresh_database) as conn:
        assert await conn.fetchval("SELECT has_table_privilege('flow.event_audit', 'UPDATE, DELETE')")
        async with conn.transaction():
            await conn.execute("SELECT set_config('flow.caller_sub', 'alice', true), "
                               "set_config('flow.caller_client', 'console', true)")
            await conn.execute("INSERT INTO flow.event (code, description) VALUES (900, 'Audit me')")
            await conn.execute("UPDATE flow.event SET active = false WHERE code = 900")
        await conn.execute("UPDATE flow.event SET description = 'Nobody named' WHERE code = 900")
        rows = await conn.fetch("SELECT callersub, callerclient, before, after FROM flow.event_audit "
                                "WHERE code = 900 ORDER BY id")
        assert [(r["callersub"], r["callerclient"]) for r in rows] == [("alice", "console")] * 2 + [(None, None)]
        assert rows[0]["before"] is None and json.loads(rows[0]["after"])["active"] is True
        assert json.loads(rows[1]["before"])["active"] is True and json.loads(rows[1]["after"])["active"] is False
        assert json.loads(rows[2]["after"])["description"] == "Nobody named"
        for rewrite in ("UPDATE flow.event_audit SET callersub = 'mallory'", "DELETE FROM flow.event_audit",
                        "TRUNCATE flow.event_audit"):
            with pytest.raises(asyncpg.PostgresError, match="append-only|permission denied"):
                await conn.execute(rewrite)
        assert await conn.fetchval("SELECT count(*) FROM flow.event_audit WHERE code = 900") == 3
        assert await conn.fetchval("SELECT count(*) FROM flow.event_audit WHERE callersub = 'mallory'") == 0


async def test_an_old_message_without_a_caller_still_decodes_and_applies(fresh_database):
    old = posting(account="oldmsg")
    body = json.loads(old.model_dump_json())
    del body["caller"]  # as ingest wrote messages before callers were recorded
    decoded = decode(json.dumps(body))
    assert decoded.caller is None
    new = decode(posting(account="newmsg", caller=Caller(sub="bob", client="app")).model_dump_json())
    engine = create_engine(fresh_database, 2)
    try:
        async with engine.begin() as conn:
            outcomes = await apply_batch(conn, [decoded, new], 7)
        assert [o.status for o in outcomes] == ["applied", "applied"]
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT t.account, t.callersub, t.callerclient, o.callersub AS osub, o.callerclient AS oclient "
                "FROM flow.transaction t JOIN flow.outcome o USING (id) ORDER BY t.account"))).all()
        assert [tuple(r) for r in rows] == [("newmsg", "bob", "app", "bob", "app"), ("oldmsg", None, None, None, None)]
    finally:
        await engine.dispose()
