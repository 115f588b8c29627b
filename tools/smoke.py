"""Smoke tests of a deployed FLOW over HTTP, and the integration test on a reserved test branch.

    python -m tools.smoke dev --evidence DIR           the environment's URLs, branch and mode from infra/env/dev.json
    python -m tools.smoke --ingest-url U --query-url U --branch 9999 [--read-only] [--integration N]

Read-only (production): the query API answers with a token and refuses one without it, the event
catalogue is readable, a balance of the test branch is readable, ingest refuses an unauthenticated
posting from its headers alone (nothing is read or published). Write mode adds a posting to a new
account of the reserved test branch (never a real one: the environment's entitlements give the
pipeline's client that branch only) followed until it is applied and its balance moved by exactly its
amount; --integration N posts N postings in batches over 10 new accounts of that branch across the
last 5 days and compares every statement and daily balance with a model kept here.

The token: $FLOW_SMOKE_TOKEN, or client credentials ($FLOW_SMOKE_CLIENT_ID, $FLOW_SMOKE_CLIENT_SECRET)
at the environment's token URL. Each check is a JUnit test case in DIR/junit-smoke.xml, the figures
(latencies, rates) go to DIR/figures-smoke.json and are printed; exit 1 if any check failed.
"""

import argparse
import json
import os
import random
import sys
import time
import uuid
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree

import httpx

APPLY_TIMEOUT_SECONDS = 180


class Smoke:
    def __init__(self, ingest: str, query: str, token: str, branch: str) -> None:
        self.ingest, self.query, self.branch = ingest.rstrip("/"), query.rstrip("/"), branch
        self.http = httpx.Client(timeout=30, headers={"authorization": f"Bearer {token}"})
        self.anonymous = httpx.Client(timeout=30)
        self.results: list[tuple[str, float, str | None]] = []  # name, seconds, failure
        self.figures: dict[str, float | int] = {}
        self.run = uuid.uuid4().hex[:10].upper()  # new accounts for every run: statements start empty

    def check(self, name: str, fn) -> None:
        started = time.monotonic()
        try:
            fn()
            failure = None
        except Exception as error:  # a failed check is reported, the others still run
            failure = f"{type(error).__name__}: {error}"
        self.results.append((name, time.monotonic() - started, failure))
        print(f"{'ok  ' if failure is None else 'FAIL'} {name}" + (f": {failure}" if failure else ""), flush=True)

    def get(self, path: str, **params) -> dict:
        response = self.http.get(self.query + path, params=params)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:300]}"
        return response.json()

    # --- read-only -------------------------------------------------------------------------------

    def read_only(self) -> None:
        def refused_without_token() -> None:
            for method, url in (("GET", self.query + "/v1/events"), ("POST", self.ingest + "/v1/transactions")):
                response = self.anonymous.request(method, url, json={} if method == "POST" else None)
                assert response.status_code == 401 and response.json().get("code") == "R070", \
                    f"{method} {url} without a token: {response.status_code} {response.text[:200]}"

        def events() -> None:
            self.events = self.get("/v1/events")["items"]
            assert self.events, "the event catalogue is empty"

        def balance() -> None:
            self.get(f"/v1/accounts/{self.branch}/SMOKE{self.run}/balance")

        self.check("both APIs refuse a request without a token (401 R070)", refused_without_token)
        self.check("the event catalogue is readable", events)
        self.check(f"a balance of test branch {self.branch} is readable", balance)

    # --- write: the reserved test branch only ---------------------------------------------------

    def event(self, debitcredit: str) -> int:
        flag = "allowcredit" if debitcredit == "C" else "allowdebit"
        return next(e["code"] for e in self.events if e["active"] and e[flag])

    def wait_applied(self, tracekey: str, count: int) -> list[dict]:
        deadline = time.monotonic() + APPLY_TIMEOUT_SECONDS
        while True:
            items = self.get("/v1/transactions", tracekey=tracekey)["items"]
            if len(items) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(items) == count, f"{len(items)} of {count} postings decided within {APPLY_TIMEOUT_SECONDS} s"
        rejected = [(i["id"], i["code"]) for i in items if i["status"] != "applied"]
        assert not rejected, f"rejected: {rejected[:5]}"
        return items

    def one_posting(self) -> None:
        account, tracekey = f"SMOKE{self.run}", str(uuid.uuid4())
        posting = {"branch": self.branch, "account": account, "amount": "10.00", "debitcredit": "C",
                   "eventcode": self.event("C"), "dateref": date.today().isoformat(), "tracekey": tracekey,
                   "description": "FLOW pipeline smoke test"}
        started = time.monotonic()
        response = self.http.post(self.ingest + "/v1/transactions", json=posting)
        assert response.status_code == 202, f"POST: {response.status_code} {response.text[:300]}"
        self.figures["smoke_accept_ms"] = round((time.monotonic() - started) * 1000)
        self.wait_applied(tracekey, 1)
        self.figures["smoke_accept_to_applied_ms"] = round((time.monotonic() - started) * 1000)
        balance = self.get(f"/v1/accounts/{self.branch}/{account}/balance")
        assert Decimal(balance["balance"]) == Decimal("10.00"), balance

    def integration(self, count: int) -> None:
        """`count` postings over 10 new accounts and the last 5 days; every statement line and daily
        balance compared with the model."""
        today, rng, tracekey = date.today(), random.Random(self.run), str(uuid.uuid4())
        accounts = [f"IT{self.run}{n}" for n in range(10)]
        postings = []
        for _ in range(count):
            dc = rng.choice("DC")
            postings.append({"branch": self.branch, "account": rng.choice(accounts), "debitcredit": dc,
                             "amount": f"{rng.randint(1, 9999) / 100:.2f}", "eventcode": self.event(dc),
                             "dateref": (today - timedelta(days=rng.randint(0, 4))).isoformat(), "tracekey": tracekey})
        started = time.monotonic()
        for n in range(0, count, 500):
            response = self.http.post(self.ingest + "/v1/transactions/batch", json={"items": postings[n:n + 500]})
            assert response.status_code == 202 and response.json()["accepted"] == len(postings[n:n + 500]), response.text[:300]
        accepted = time.monotonic() - started
        self.wait_applied(tracekey, count)
        applied = time.monotonic() - started
        self.figures |= {"integration_postings": count, "integration_accepted_seconds": round(accepted, 2),
                         "integration_applied_seconds": round(applied, 2),
                         "integration_postings_per_second": round(count / applied, 1)}
        model: dict[str, dict[date, list[Decimal]]] = defaultdict(lambda: defaultdict(lambda: [Decimal(0), Decimal(0)]))
        for p in postings:
            model[p["account"]][date.fromisoformat(p["dateref"])][p["debitcredit"] == "C"] += Decimal(p["amount"])
        span = {"from": (today - timedelta(days=4)).isoformat(), "to": today.isoformat()}
        for account, days in model.items():
            rows = self.get(f"/v1/accounts/{self.branch}/{account}/balances", **span)["items"]
            running, want = Decimal(0), []
            for day in sorted(days):
                debit, credit = days[day]
                running += credit - debit
                want.append((day.isoformat(), debit, credit, running))
            got = [(r["dateref"], Decimal(r["totaldebit"]), Decimal(r["totalcredit"]), Decimal(r["balance"])) for r in rows]
            assert got == want, f"{account}: daily balances {got} != model {want}"
            statement = self.get(f"/v1/accounts/{self.branch}/{account}/statement", limit=1000, **span)
            lines = sum(1 for p in postings if p["account"] == account)
            assert len(statement["items"]) == lines and Decimal(statement["closing_balance"]) == running, \
                f"{account}: statement of {len(statement['items'])} lines closing at {statement['closing_balance']}, model {lines} at {running}"

    # --- evidence --------------------------------------------------------------------------------

    def report(self, evidence: Path | None, suite: str) -> int:
        failed = [r for r in self.results if r[2]]
        for key, value in self.figures.items():
            print(f"figure {key} = {value}")
        if evidence:
            evidence.mkdir(parents=True, exist_ok=True)
            root = ElementTree.Element("testsuite", name=suite, tests=str(len(self.results)),
                                       failures=str(len(failed)), errors="0", skipped="0")
            for name, seconds, failure in self.results:
                case = ElementTree.SubElement(root, "testcase", classname=suite, name=name, time=f"{seconds:.3f}")
                if failure:
                    ElementTree.SubElement(case, "failure", message=failure[:500]).text = failure
            ElementTree.ElementTree(root).write(evidence / "junit-smoke.xml", encoding="utf-8", xml_declaration=True)
            (evidence / "figures-smoke.json").write_text(json.dumps(self.figures, indent=2) + "\n")
        print(f"{len(self.results) - len(failed)} passed, {len(failed)} failed")
        return 1 if failed or not self.results else 0


def token(url: str | None, scope: str | None) -> str:
    if os.environ.get("FLOW_SMOKE_TOKEN"):
        return os.environ["FLOW_SMOKE_TOKEN"]
    response = httpx.post(url, data={"grant_type": "client_credentials", "client_id": os.environ["FLOW_SMOKE_CLIENT_ID"],
                                     "client_secret": os.environ["FLOW_SMOKE_CLIENT_SECRET"], "scope": scope or ""}, timeout=30)
    response.raise_for_status()
    return response.json()["access_token"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("environment", nargs="?", help="dev, staging or prod: read infra/env/ENV.json's smoke section")
    parser.add_argument("--ingest-url")
    parser.add_argument("--query-url")
    parser.add_argument("--token-url")
    parser.add_argument("--scope")
    parser.add_argument("--branch", help="the reserved test branch")
    parser.add_argument("--read-only", action="store_true", help="post nothing (production)")
    parser.add_argument("--integration", type=int, default=None, help="postings of the integration test (0: none)")
    parser.add_argument("--evidence", type=Path, help="where junit-smoke.xml and figures-smoke.json go")
    args = parser.parse_args(argv)
    config: dict = {}
    if args.environment:
        from tools.deploy import Refused, load_environment  # the same ${NAME} resolution as the deploy
        try:
            config = load_environment(args.environment, plan=False, only=("smoke",))[0]["smoke"]
        except Refused as refusal:
            sys.exit(f"smoke: {refusal}")
    pick = lambda flag, key: flag if flag is not None else config.get(key)  # noqa: E731
    read_only = args.read_only or not config.get("write", True)
    smoke = Smoke(pick(args.ingest_url, "ingestUrl"), pick(args.query_url, "queryUrl"),
                  token(pick(args.token_url, "tokenUrl"), pick(args.scope, "scope")), pick(args.branch, "branch"))
    smoke.read_only()
    if not read_only:
        smoke.check(f"a posting to a new account of test branch {smoke.branch} is applied and moves its balance", smoke.one_posting)
        count = pick(args.integration, "integrationPostings") or 0
        if count:
            smoke.check(f"integration: {count} postings over 10 new accounts, every statement and daily balance as modelled",
                        lambda: smoke.integration(count))
    return smoke.report(args.evidence, f"smoke-{args.environment or 'adhoc'}")


if __name__ == "__main__":
    sys.exit(main())
