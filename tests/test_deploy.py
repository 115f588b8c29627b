"""The one deploy command (tools/deploy, tools/deploy.py) and the smoke tests (tools/smoke.py).

- `tools/deploy ENV --plan` for every environment, against the test stack's LocalStack: its checks, a change
  set of every stack, the chart rendered with the environment's values (charts/flow/env/ENV.yaml: its
  schema, helm lint --strict, every object validated) and the evidence it leaves; a second plan diffs
  against the first;
- the checks that make a deploy refuse: unresolved variables, parameters the templates refuse, image
  tags instead of digests, another environment's repository, a stage before whose tests did not all pass;
- tools/smoke.py against the test stack: read-only, then a posting and a small integration run.
"""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

from tools import deploy, smoke

ROOT = Path(__file__).resolve().parent.parent
EVIDENCE = ROOT / ".state" / "evidence"


def plan(environment: str, endpoint: str) -> tuple[subprocess.CompletedProcess, Path]:
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    done = subprocess.run([sys.executable, "-m", "tools.deploy", environment, "--plan", "--aws-endpoint", endpoint],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env={**os.environ, "FLOW_RUN_ID": run_id})
    return done, EVIDENCE / environment / run_id


@pytest.fixture(scope="module", autouse=True)
def chart_tools() -> None:
    done = subprocess.run(["bash", "tools/chart-tools.sh"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("environment", deploy.ENVIRONMENTS)
def test_plan_checks_the_environment_and_keeps_its_evidence(environment, stack):
    done, evidence = plan(environment, stack.aws_endpoint)
    assert done.returncode == 0, done.stdout + done.stderr
    print(done.stdout)
    summary = json.loads((evidence / "summary.json").read_text())
    assert summary["mode"] == "plan" and summary["environment"] == environment
    # Every stack had its change set, shown and kept; the second messaging pass is not needed in a plan.
    assert [s["stack"] for s in summary["stacks"]] == [f"flow-{s}-{environment}" for s in deploy.ORDER[:-1]]
    kept = sorted(p.name for p in (evidence / "changesets").iterdir())
    assert kept == [f"{n}-{s}.json" for n, s in enumerate(deploy.ORDER[:-1])]
    data = json.loads((evidence / "changesets" / "2-data.json").read_text())
    assert data["Changes"] and data["Parameters"]["NameSuffix"] == f"-{environment}"
    replicas = {"dev": 0, "staging": 1, "prod": 2}[environment]
    assert sorted(data["SkippedByCondition"]) == [f"Replica{n}" for n in range(replicas + 1, 4)]
    cfn = boto3.client("cloudformation", endpoint_url=stack.aws_endpoint, region_name="eu-west-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    for stack_name in (s["stack"] for s in summary["stacks"]):  # a plan leaves nothing behind in LocalStack
        assert f"{stack_name} (CREATE)" in done.stdout
        assert deploy.stack_status(cfn, stack_name) is None
    # The values used, the rendered release, its diff; images by digest, a placeholder clearly marked.
    assert {p.name for p in (evidence / "values").iterdir()} == {f"{environment}.yaml", "stacks.json", "environment.json", "images.json"}
    manifests = (evidence / "manifests.yaml").read_text()
    assert f"@{deploy.PLACEHOLDER_DIGEST}" in manifests and "PLACEHOLDER" in done.stdout
    assert (evidence / "manifests.diff").exists() and "objects checked, 0 problems" in done.stdout
    images = json.loads((evidence / "images.json").read_text())
    assert all(deploy.DIGEST.match(ref) for ref in images.values())
    assert "PLAN STAND-INS" in done.stdout and (evidence.parent / "latest").resolve() == evidence


def test_a_second_plan_diffs_against_the_first(stack):
    first, _ = plan("dev", stack.aws_endpoint)
    second, evidence = plan("dev", stack.aws_endpoint)
    assert first.returncode == 0 and second.returncode == 0, first.stdout + second.stdout
    assert json.loads((evidence / "summary.json").read_text())["diff"].endswith(": +0 -0 lines")
    assert (evidence / "manifests.diff").read_text() == ""


def test_environments_differ_where_they_should():
    values = {e: json.loads((ROOT / "infra" / "env" / f"{e}.json").read_text()) for e in deploy.ENVIRONMENTS}
    assert [values[e]["gatedBy"] for e in deploy.ENVIRONMENTS] == ["make test", "dev", "staging"]
    assert [values[e]["stacks"]["data"]["ReplicaCount"] for e in deploy.ENVIRONMENTS] == ["0", "1", "2"]
    assert values["prod"]["stacks"]["data"]["DeletionProtection"] == "true"
    assert values["prod"]["smoke"]["write"] is False and values["dev"]["smoke"]["write"] is True
    assert len({values[e]["suffix"] for e in deploy.ENVIRONMENTS}) == 3


# --- what makes a deploy refuse --------------------------------------------------------------------

def test_a_deploy_refuses_without_the_accounts_values(monkeypatch, capsys):
    for name in deploy.PLAN_STANDINS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLOW_RUN_ID", f"test-{uuid.uuid4().hex[:8]}")
    assert deploy.main(["dev", "--images", "nothing.json"]) == 1
    out = capsys.readouterr().out
    assert "REFUSED" in out and "FLOW_VPC_ID" in out and "FLOW_AUTH_ISSUER" in out


def test_variables_resolve_from_the_environment_with_defaults(monkeypatch):
    monkeypatch.setenv("FLOW_X", "vpc-1")
    used, missing = {}, set()
    assert deploy.resolve({"${FLOW_X}": ["${FLOW_X}", "${FLOW_Y:-d}", "${FLOW_Z}"]}, False, used, missing) == {
        "vpc-1": ["vpc-1", "d", "${FLOW_Z}"]}
    assert used == {"FLOW_X": "environment"} and missing == {"FLOW_Z"}


def test_parameters_the_templates_would_refuse_are_refused_before_aws():
    facts = deploy.template_facts()
    problems = deploy.check_parameters("data", facts["data"]["Parameters"],
                                       {"NameSuffix": "-dev", "VpcId": "vpc-1", "ReplicaCount": "5", "MultiAZ": "maybe",
                                        "AllocatedStorage": "lots", "Bogus": "1"})
    text = "\n".join(problems)
    for needle in ("Bogus is not a parameter", "SubnetIds is required", "ReplicaCount='5'", "MultiAZ='maybe'",
                   "AllocatedStorage='lots' is not a number"):
        assert needle in text, text
    assert deploy.condition_values(facts["data"], {"ReplicaCount": "2"}) == {
        "HasReplica1": True, "HasReplica2": True, "HasReplica3": False}


def test_images_are_deployed_by_digest_only_from_the_environments_registry(tmp_path):
    registry = deploy.plan_outputs("eu-west-1", "-dev")["registry"]
    digest = "sha256:" + "a" * 64
    good = {s: f"{registry[f'{s.capitalize()}RepositoryUri']}@{digest}" for s in deploy.SERVICES}
    path = tmp_path / "images.json"
    path.write_text(json.dumps(good))
    assert deploy.check_images(path, registry, plan=False) == good
    for bad, why in ((good | {"query": good["query"].replace(f"@{digest}", ":1.2.3")}, "tags are never deployed"),
                     (good | {"engine": good["engine"].replace("-dev@", "-prod@")}, "not this environment's repository")):
        path.write_text(json.dumps(bad))
        with pytest.raises(deploy.Refused, match=why):
            deploy.check_images(path, registry, plan=False)
    with pytest.raises(deploy.Refused, match="--images FILE is required"):
        deploy.check_images(None, registry, plan=False)


def junit(folder: Path, **counts) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    attributes = " ".join(f'{k}="{v}"' for k, v in ({"tests": 3, "failures": 0, "errors": 0, "skipped": 0} | counts).items())
    (folder / "junit.xml").write_text(f'<?xml version="1.0"?><testsuites><testsuite name="s" {attributes}/></testsuites>')
    return folder


def test_a_stage_runs_only_when_every_test_of_the_stage_before_passed(tmp_path):
    assert deploy.check_gate([junit(tmp_path / "ok")], "dev")["tests"] == 3
    for name, counts in (("failed", {"failures": 1}), ("error", {"errors": 1}), ("skipped", {"skipped": 1}), ("none", {"tests": 0})):
        with pytest.raises(deploy.Refused, match="did not all pass"):
            deploy.check_gate([junit(tmp_path / name, **counts)], "dev")
    with pytest.raises(deploy.Refused):
        deploy.check_gate([], "dev")


# --- smoke tests against the test stack ------------------------------------------------------------

def test_smoke_tests_read_only_then_write_and_integrate(stack, token, ingest_url, query_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLOW_SMOKE_TOKEN", token("flow.read"))
    common = ["--ingest-url", ingest_url, "--query-url", query_url, "--branch", "9999"]
    assert smoke.main([*common, "--read-only", "--evidence", str(tmp_path / "ro")]) == 0
    out = capsys.readouterr().out
    assert "3 passed, 0 failed" in out and "POST /v1" not in out
    # Then as the pipeline runs it: dev's settings from the environment, a token by client credentials.
    monkeypatch.delenv("FLOW_SMOKE_TOKEN")
    for name, value in {"FLOW_INGEST_URL": ingest_url, "FLOW_QUERY_URL": query_url, "FLOW_SMOKE_SCOPE": "flow.read flow.write",
                        "FLOW_TOKEN_URL": f"http://127.0.0.1:{stack.config.issuer_port}/token",
                        "FLOW_SMOKE_CLIENT_ID": "flow-dev", "FLOW_SMOKE_CLIENT_SECRET": "flow-dev-secret"}.items():
        monkeypatch.setenv(name, value)
    assert smoke.main(["dev", "--integration", "60", "--evidence", str(tmp_path / "rw")]) == 0, capsys.readouterr().out
    figures = json.loads((tmp_path / "rw" / "figures-smoke.json").read_text())
    assert figures["integration_postings"] == 60 and figures["smoke_accept_to_applied_ms"] > 0
    assert deploy.check_gate([tmp_path / "rw"], "dev") == {"files": 1, "tests": 5, "failures": 0, "errors": 0, "skipped": 0}


def test_smoke_tests_fail_and_say_so(stack, ingest_url, query_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLOW_SMOKE_TOKEN", "not-a-token")
    assert smoke.main(["--ingest-url", ingest_url, "--query-url", query_url, "--branch", "9999", "--read-only",
                       "--evidence", str(tmp_path)]) == 1
    with pytest.raises(deploy.Refused, match="did not all pass"):
        deploy.check_gate([tmp_path], "staging")
