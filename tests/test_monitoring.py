"""What the chart gives Prometheus and Grafana: a ServiceMonitor for the three services' /metrics, a
PrometheusRule with FLOW's alerts and a dashboard ConfigMap. The objects are checked against the
Prometheus Operator's models, the rules with promtool (`check rules`, and the unit tests in
tests/alerts.test.yaml), the dashboard's queries with promtool's parser, and every metric the rules and
the dashboard name against what the services export (and the dashboard shows every one of them)."""

import json
import re
import shutil
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client import REGISTRY

from tests.test_chart import (HELM, KUBE, MONITORING_KINDS, ROOT, STATE, by_kind, chart_tools,  # noqa: F401
                              model_check, parse_yaml, rendered, run)
from tests.waiting import wait_until_async
from tools.devstack.processes import free_port, spawn, stop, wait_until

PROMTOOL = STATE / "bin" / "promtool"
VALUES = "monitoring-values.yaml"


def operator_check(docs) -> int:
    return model_check("cloudcoil.models.prometheus_operator.v1", docs).returncode


def rule_groups(*extra: str) -> dict:
    done = run(HELM, "template", "flow", ROOT / "charts" / "flow", "--namespace", "ledger", *KUBE,
               "-f", ROOT / "charts" / "flow" / "ci" / VALUES, *extra)
    assert done.returncode == 0, done.stderr
    [rule] = [d for d in parse_yaml(done.stdout) if d["kind"] == "PrometheusRule"]
    return rule["spec"]


def test_monitoring_objects_are_made_only_when_asked():
    assert not [d for d in rendered("default-values.yaml") if d["kind"] in MONITORING_KINDS]
    assert "flow-dashboard" not in by_kind(rendered("default-values.yaml"), "ConfigMap")
    docs = rendered(VALUES)
    [monitor] = by_kind(docs, "ServiceMonitor").values()
    [rule] = by_kind(docs, "PrometheusRule").values()
    for obj in (monitor, rule):
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # The ServiceMonitor picks exactly the three Services, by labels they carry, on a port each has.
    picked = {name for name, svc in by_kind(docs, "Service").items()
              if monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()}
    assert picked == {"flow-ingest", "flow-engine", "flow-query"}
    # Scraped on the health and metrics port, which each Service exposes when a ServiceMonitor is made.
    assert all("health" in {p["name"] for p in by_kind(docs, "Service")[name]["spec"]["ports"]} for name in picked)
    assert monitor["spec"]["endpoints"] == [{"port": "health", "path": "/metrics", "interval": "15s"}]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ledger"]}
    # Scraped by the ServiceMonitor, not by annotations as well.
    for deployment in by_kind(docs, "Deployment").values():
        assert "prometheus.io/scrape" not in deployment["spec"]["template"]["metadata"].get("annotations", {})


def test_monitoring_objects_are_valid_for_the_prometheus_operator():
    docs = [d for d in rendered(VALUES) if d["kind"] in MONITORING_KINDS]
    assert sorted(d["kind"] for d in docs) == sorted(MONITORING_KINDS)
    assert operator_check(docs) == 0
    # ...and the check does catch a bad object.
    monitor = json.loads(json.dumps(by_kind(docs, "ServiceMonitor")["flow"]))
    monitor["spec"]["endpoints"][0]["bogus"] = 1
    rule = json.loads(json.dumps(by_kind(docs, "PrometheusRule")["flow"]))
    rule["spec"]["groups"][0]["rules"][0]["for"] = {"minutes": 2}
    assert operator_check([monitor]) != 0 and operator_check([rule]) != 0


def test_the_alerts_pass_promtool_and_their_unit_tests(tmp_path):
    (tmp_path / "rules.yaml").write_text(json.dumps(rule_groups()))  # JSON is YAML
    shutil.copy(ROOT / "tests" / "alerts.test.yaml", tmp_path)
    checked = run(PROMTOOL, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(PROMTOOL, "test", "rules", "alerts.test.yaml", cwd=tmp_path)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_every_alert_is_unit_tested_and_the_cron_jobs_alerts_come_with_them():
    alerts = [r["alert"] for g in rule_groups()["groups"] for r in g["rules"]]
    tested = set(re.findall(r"alertname: (\w+)", (ROOT / "tests" / "alerts.test.yaml").read_text()))
    assert len(alerts) == len(set(alerts)) == 12 and set(alerts) == tested
    without = [r["alert"] for g in rule_groups("--set", "reconcile.enabled=false")["groups"] for r in g["rules"]]
    assert set(alerts) - set(without) == {"FlowReconciliationFailed"}
    without = [r["alert"] for g in rule_groups("--set", "archive.enabled=false")["groups"] for r in g["rules"]]
    assert set(alerts) - set(without) == {"FlowArchiveNotSucceeding"}


def _exported_metric_names() -> set[str]:
    """Every series name FLOW's three services can expose (their metrics register on import)."""
    import flow_engine.app  # noqa: F401
    import flow_ingest.app  # noqa: F401
    import flow_query.app  # noqa: F401

    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_count", "_sum"], "info": ["_info"]}
    return {family.name + suffix for family in REGISTRY.collect() if family.name.startswith("flow_")
            for suffix in suffixes.get(family.type, [""])}


def test_the_alerts_name_only_metrics_flow_exports():
    exported = _exported_metric_names()
    assert {"flow_engine_queue_messages", "flow_engine_outcomes_total", "flow_ingest_postings_total"} <= exported
    named = {name for g in rule_groups()["groups"] for r in g["rules"]
             for name in re.findall(r"\b(flow_[a-z_]+)\b", r["expr"])}
    assert named and named <= exported, named - exported


DASHBOARD = ROOT / "charts" / "flow" / "dashboards" / "flow.json"


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return variables + [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_the_dashboard_ships_in_a_configmap_for_grafanas_sidecar():
    [configmap] = [d for d in rendered(VALUES) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "flow-dashboard"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Ledger"}
    assert json.loads(configmap["data"]["flow.json"]) == json.loads(DASHBOARD.read_text())


def test_the_dashboards_panels_are_well_formed():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = set()
    for p in panels:  # on the 24-column grid, no two panels overlap
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, p["title"]
        cells |= mine
        for target in p.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}" and target["expr"], p["title"]


def test_the_dashboards_queries_are_promql(tmp_path):
    """promtool parses each query (Grafana's variables filled in) as a recording rule."""
    queries = [q.replace("$namespace", "ledger").replace("$__rate_interval", "5m") for q in _dashboard_queries()]
    queries = [q for q in queries if not q.startswith("label_values(")]  # Grafana's, not PromQL
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"flow:dashboard:{n}", "expr": q}
                                                        for n, q in enumerate(queries)]}]}
    (tmp_path / "rules.yaml").write_text(json.dumps(rules))
    checked = run(PROMTOOL, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0 and f"{len(queries)} rules found" in checked.stdout, checked.stdout + checked.stderr
    # ...and the parser does refuse a broken query.
    rules["groups"][0]["rules"][0]["expr"] = "sum(rate(flow_engine_outcomes_total[5m])"
    (tmp_path / "rules.yaml").write_text(json.dumps(rules))
    assert run(PROMTOOL, "check", "rules", "rules.yaml", cwd=tmp_path).returncode != 0


def test_the_dashboard_shows_every_flow_metric_and_names_no_other():
    exported = _exported_metric_names()
    named = {name for q in _dashboard_queries() for name in re.findall(r"\b(flow_[a-z_]+)\b", q)}
    assert named <= exported, named - exported
    # Each metric family (a histogram through any of its series) appears somewhere.
    families = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in exported}
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in named}
    assert families == shown, families - shown


# --- against a real Prometheus scraping the test stack ---------------------------------------------

@pytest.fixture
def prometheus(stack, tmp_path):
    """Prometheus (Debian's, from tools/chart-tools.sh) scraping the stack's three services every second
    as if they ran in namespace "ledger", with the chart's alert rules; yields its query URL."""
    port = free_port()
    (tmp_path / "rules.yaml").write_text(json.dumps(rule_groups()))
    targets = {"ingest": stack.config.ingest_port, "engine": stack.config.engine_port, "query": stack.config.query_port}
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": ["rules.yaml"],
              "scrape_configs": [{"job_name": name, "static_configs": [
                  {"targets": [f"127.0.0.1:{target}"], "labels": {"namespace": "ledger", "pod": f"flow-{name}-0"}}]}
                  for name, target in targets.items()]}
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))
    log = tmp_path / "prometheus.log"
    proc = spawn([str(STATE / "bin" / "prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
                  f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"], log=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, 30, "prometheus", proc, log)
        yield url
    finally:
        stop(proc)


async def _query(http: httpx.AsyncClient, url: str, expr: str) -> list:
    answer = (await http.get(f"{url}/api/v1/query", params={"query": expr})).json()
    assert answer["status"] == "success", (expr, answer)
    return answer["data"]["result"]


async def _wait_for(http, url: str, expr: str, timeout: float = 30) -> list:
    """The answer to `expr`, once there is one."""
    return await wait_until_async(lambda: _query(http, url, expr), f"Prometheus to answer {expr}", timeout,
                                  interval=0.5)


@pytest.mark.integration
async def test_the_dashboard_and_alerts_work_on_the_stacks_real_metrics(prometheus, ingest_url, http, callbacks):
    async with httpx.AsyncClient(timeout=10) as prom:
        today = datetime.now(UTC).date().isoformat()
        good = [{"branch": "0007", "account": f"{n:09d}", "amount": "12.34", "debitcredit": "C", "eventcode": 1,
                 "dateref": today, "tracekey": str(uuid.uuid4())} for n in range(5)]
        refuse = {**good[0], "amount": "0"}
        # Every target scraped a few times before the postings, so rates see them arrive (each code's
        # series is there at 0 from the start).
        await _wait_for(prom, prometheus, 'count_over_time(up{namespace="ledger"}[1m]) >= 3 and up == 1')
        for posting in good:
            assert (await http.post(f"{ingest_url}/v1/transactions", json=posting)).status_code == 202
        assert (await http.post(f"{ingest_url}/v1/transactions", json=refuse)).json()["code"] == "R004"
        await callbacks.collect({p["tracekey"] for p in good}, timeout=60)
        applied = 'flow_engine_outcomes_total{namespace="ledger", status="applied"}'
        await _wait_for(prom, prometheus, f"increase({applied}[1m]) >= 5")

        answers = {}
        for query in _dashboard_queries():
            if query.startswith("label_values("):
                continue
            answers[query] = await _query(prom, prometheus, query.replace("$namespace", "ledger")
                                          .replace("$__rate_interval", "1m"))

        def value(title: str, legend: str | None = None) -> list[float]:
            """The values a panel shows now (those of one legend, when given)."""
            [panel] = [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["title"] == title]
            return [float(r["value"][1]) for t in panel["targets"] for r in answers[t["expr"]]
                    if legend is None or legend in r["metric"].values()]

        assert value("Postings accepted / s")[0] > 0 and value("Postings applied / s")[0] > 0
        assert value("Ingest: refusals by code", "R004")[0] > 0
        assert value("Engine: outcomes", "applied")[0] > 0
        assert len(value("FlowTransaction")) == 3 and len(value("FlowTransactionDlq")) == 3  # by state
        assert 0 < value("Batch apply time")[0] < 60 and value("Postings per batch")[0] >= 1
        assert value("Ingest: postings per PublishBatch call")[0] >= 1
        assert value("Query: replica lag") and value("Oldest unpublished callback")
        namespaces = (await prom.get(f"{prometheus}/api/v1/label/namespace/values",
                                     params={"match[]": "flow_engine_queue_messages"})).json()["data"]
        assert namespaces == ["ledger"]

        # The alert rules evaluate on these series without error; the engine is seen.
        rules = [r for g in (await prom.get(f"{prometheus}/api/v1/rules")).json()["data"]["groups"] for r in g["rules"]]
        assert len(rules) == 12 and all(r["health"] == "ok" for r in rules), rules
        assert {r["name"]: r["state"] for r in rules}["FlowEngineAbsent"] == "inactive"
