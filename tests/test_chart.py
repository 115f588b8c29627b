"""The deployment artefacts: the Helm chart (lint, Kubernetes 1.30 and KEDA schemas, the hardening
and wiring users rely on, the services' own settings models accepting what it renders, its values
schema), the CloudFormation template, the Dockerfiles and skaffold.yaml. No cluster and no Docker engine are needed: helm, kubernetes-validate,
cloudcoil-models-keda and cfn-lint come from tools/chart-tools.sh, which installs them into .state/."""

import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "flow"
STATE = ROOT / ".state"
HELM = STATE / "bin" / "helm"
VENV = STATE / "chart-venv" / "bin"
KUBE = ["--kube-version", "1.30.0"]
KEDA_API = ["--api-versions", "keda.sh/v1alpha1"]
CI_VALUES = sorted(p.name for p in (CHART / "ci").glob("*.yaml"))
SERVICES = ("ingest", "engine", "query")
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule"}
TRACING_ENV = {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"}  # flow_kit.tracing  # the Prometheus Operator's; see test_monitoring.py
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# user:password@ (or any user@) in a URL: never in a rendered manifest, whatever the mode.
CREDENTIALS_IN_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s\"'@]*@", re.I)
SM_VALUES = "secrets-manager-values.yaml"
AUTH_SET = ("--set", "auth.issuer=https://idp.example/v2.0,auth.audience=api://flow")


def run(*args, input=None, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, input=input, cwd=cwd, timeout=120)


@pytest.fixture(scope="session", autouse=True)
def chart_tools() -> None:
    done = run("bash", ROOT / "tools" / "chart-tools.sh")
    assert done.returncode == 0, done.stdout + done.stderr


def parse_yaml(text: str) -> list:
    """Every non-empty YAML document in `text`, via PyYAML in the tools' venv (the app's has none)."""
    done = run(VENV / "python", "-c",
               "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
               input=text)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def helm_template(*args) -> subprocess.CompletedProcess:
    return run(HELM, "template", "flow", CHART, "--namespace", "ledger", *KUBE, *args)


@cache
def rendered_text(values_file: str, *extra: str) -> str:
    done = helm_template("-f", CHART / "ci" / values_file, *KEDA_API, *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout


@cache
def rendered(values_file: str, *extra: str) -> tuple:
    return tuple(parse_yaml(rendered_text(values_file, *extra)))


@cache
def ci_values(values_file: str) -> dict:
    [values] = parse_yaml((CHART / "ci" / values_file).read_text())
    return values


def by_kind(docs, kind: str) -> dict:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs):
    """(object name, pod spec) of every workload."""
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]
        elif d["kind"] == "CronJob":
            yield d["metadata"]["name"], d["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def env_of(container) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


def service_env(docs, svc: str) -> dict:
    [container] = by_kind(docs, "Deployment")[f"flow-{svc}"]["spec"]["template"]["spec"]["containers"]
    return env_of(container)


def secret_ref(var: dict) -> dict:
    assert "value" not in var and set(var["valueFrom"]) == {"secretKeyRef"}, var
    return var["valueFrom"]["secretKeyRef"]


# --- helm lint and the Kubernetes / KEDA schemas ---------------------------------------------------

@pytest.mark.parametrize("values_file", CI_VALUES)
def test_chart_lints_strictly(values_file):
    done = run(HELM, "lint", "--strict", CHART, "-f", CHART / "ci" / values_file, *KUBE)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values_file", CI_VALUES)
def test_rendered_objects_are_valid_kubernetes_1_30(values_file, tmp_path):
    assert_valid_kubernetes([d for d in rendered(values_file) if d["kind"] not in KEDA_KINDS | MONITORING_KINDS],
                            tmp_path)


def assert_valid_kubernetes(docs, tmp_path) -> None:
    """kubernetes-validate, strict, for Kubernetes 1.30, of every object of `docs` (as files in tmp_path)."""
    files = []
    for n, doc in enumerate(docs):
        files.append(tmp_path / f"{n:02d}-{doc['kind']}.json")
        files[-1].write_text(json.dumps(doc))
    done = run(VENV / "kubernetes-validate", "--strict", "-k", "1.30.0", "--quiet", *files)
    # A kind without a schema is only a warning there, so one is a failure here.
    assert done.returncode == 0 and "WARN" not in done.stdout + done.stderr, done.stdout + done.stderr


MODEL_CHECK = r"""
import importlib, json, sys
module = importlib.import_module(sys.argv[1])
for doc in json.load(sys.stdin):
    back = getattr(module, doc["kind"]).model_validate(doc).model_dump(by_alias=True, exclude_none=True, mode="json")
    # The models drop fields they do not know: only a lossless round trip proves there were none.
    if back != doc:
        sys.exit(f"{doc['kind']} has fields {sys.argv[1]} does not know: {json.dumps(doc)}")
"""


def model_check(models: str, docs) -> subprocess.CompletedProcess:
    """Validates custom resources against a cloudcoil models module (in the tools' venv)."""
    return run(VENV / "python", "-c", MODEL_CHECK, models, input=json.dumps(list(docs)))


def keda_check(docs) -> subprocess.CompletedProcess:
    return model_check("cloudcoil.models.keda.v1alpha1", docs)


def test_keda_objects_are_valid_for_keda():
    docs = [d for d in rendered("keda-values.yaml") if d["kind"] in KEDA_KINDS]
    assert sorted(d["kind"] for d in docs) == sorted(KEDA_KINDS)
    done = keda_check(docs)
    assert done.returncode == 0, done.stderr


def test_the_validators_do_reject_bad_objects(tmp_path):
    """Guards the two checks above against passing vacuously."""
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
               "spec": {"ports": [{"port": 80}], "bogus": 1}}
    (tmp_path / "bad.json").write_text(json.dumps(service))
    assert run(VENV / "kubernetes-validate", "--strict", "-k", "1.30.0", "--quiet", tmp_path / "bad.json").returncode != 0
    scaled = by_kind(rendered("keda-values.yaml"), "ScaledObject")["flow-engine"]
    unknown = json.loads(json.dumps(scaled))
    unknown["spec"]["triggers"][0]["bogus"] = "x"
    wrong = json.loads(json.dumps(scaled))
    wrong["spec"]["minReplicaCount"] = "many"
    assert keda_check([unknown]).returncode != 0
    assert keda_check([wrong]).returncode != 0


# --- what the rendered objects promise -------------------------------------------------------------

@pytest.mark.parametrize("values_file", CI_VALUES)
def test_every_pod_is_hardened_and_bounded(values_file):
    specs = list(pod_specs(rendered(values_file)))
    assert specs
    for name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], name
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
            assert "memory" in c["resources"]["limits"], name
            assert any(m["mountPath"] == "/tmp" and m["name"] in tmp_volumes for m in c["volumeMounts"]), name


@pytest.mark.parametrize("values_file", CI_VALUES)
def test_services_probe_listen_on_all_interfaces_and_are_reachable(values_file):
    docs = rendered(values_file)
    deployments, services = by_kind(docs, "Deployment"), by_kind(docs, "Service")
    assert set(deployments) == {f"flow-{s}" for s in SERVICES}
    for svc in SERVICES:
        deployment = deployments[f"flow-{svc}"]
        [c] = deployment["spec"]["template"]["spec"]["containers"]
        env, prefix = env_of(c), f"FLOW_{svc.upper()}_"
        assert env[prefix + "HTTP_HOST"]["value"] == "0.0.0.0"
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert set(ports) == {"http", "health"} and ports["http"] != ports["health"]
        assert env[prefix + "HTTP_PORT"]["value"] == str(ports["http"])
        # health and metrics on a port of their own (FLOW_<SVC>_HEALTH_PORT), the probes too
        assert env[prefix + "HEALTH_PORT"]["value"] == str(ports["health"])
        assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        if "prometheus.io/port" in annotations:
            assert annotations["prometheus.io/port"] == str(ports["health"])
        # /readyz runs its dependency checks one after another, up to 3 s each: database and SNS
        # (ingest), database and replica lag (query), database, SQS and SNS (engine).
        assert c["readinessProbe"]["timeoutSeconds"] > 3 * (3 if svc == "engine" else 2)
        assert deployment["spec"]["template"]["spec"]["enableServiceLinks"] is False
        service = services[f"flow-{svc}"]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert service["spec"]["ports"][0]["targetPort"] == "http"
        # the Service exposes the health port only for the ServiceMonitor
        monitored = ci_values(values_file).get("monitoring", {}).get("serviceMonitor", {}).get("enabled", False)
        assert {p["targetPort"] for p in service["spec"]["ports"]} == ({"http", "health"} if monitored else {"http"})


def test_engine_env_matches_its_settings_and_stops_gracefully():
    engine = by_kind(rendered("keda-values.yaml"), "Deployment")["flow-engine"]
    spec = engine["spec"]["template"]["spec"]
    env = env_of(spec["containers"][0])
    for name in ("QUEUE_URL", "CALLBACK_TOPIC_ARN", "POLLERS", "BATCH_SIZE", "WAIT_SECONDS",
                 "DATABASE_POOL_SIZE", "RETROACTIVE_DAYS", "AWS_REGION", "LOG_LEVEL"):
        assert "value" in env[f"FLOW_ENGINE_{name}"], name
    assert int(env["FLOW_ENGINE_DATABASE_POOL_SIZE"]["value"]) >= int(env["FLOW_ENGINE_POLLERS"]["value"]) + 2
    assert spec["terminationGracePeriodSeconds"] >= max(45, int(env["FLOW_ENGINE_WAIT_SECONDS"]["value"]) + 30)
    ingest = env_of(by_kind(rendered("minimal-values.yaml"), "Deployment")["flow-ingest"]["spec"]["template"]["spec"]["containers"][0])
    assert ingest["FLOW_INGEST_REQUEST_TOPIC_ARN"]["value"].startswith("arn:aws:sns:")
    assert "FLOW_INGEST_AWS_ENDPOINT_URL" not in ingest  # unset on AWS


def test_engine_replicas_are_left_to_keda_only_when_it_scales():
    with_keda = rendered("keda-values.yaml")
    without = rendered("default-values.yaml")
    assert "replicas" not in by_kind(with_keda, "Deployment")["flow-engine"]["spec"]
    assert by_kind(with_keda, "Deployment")["flow-ingest"]["spec"]["replicas"] == 2
    assert by_kind(without, "Deployment")["flow-engine"]["spec"]["replicas"] == 2
    assert not [d for d in without if d["kind"] in KEDA_KINDS]


def test_keda_scales_the_engine_on_its_queue_with_the_workload_identity():
    docs = rendered("keda-values.yaml")
    scaled = by_kind(docs, "ScaledObject")["flow-engine"]
    auth = by_kind(docs, "TriggerAuthentication")
    assert scaled["spec"]["scaleTargetRef"]["name"] in by_kind(docs, "Deployment")
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 20)
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    assert trigger["metadata"] == {"queueURLFromEnv": "FLOW_ENGINE_QUEUE_URL", "queueLength": "1000", "awsRegion": "us-east-1"}
    assert auth[trigger["authenticationRef"]["name"]]["spec"]["podIdentity"] == {"provider": "aws", "identityOwner": "workload"}
    # KEDA resolves the URL from the scaled container's own env: it must be a plain value there.
    engine = by_kind(docs, "Deployment")["flow-engine"]["spec"]["template"]["spec"]["containers"]
    [container] = [c for c in engine if c["name"] == scaled["spec"]["scaleTargetRef"]["envSourceContainerName"]]
    assert env_of(container)["FLOW_ENGINE_QUEUE_URL"]["value"].startswith("https://sqs.")
    # and the workload's role is the IRSA role on the engine's own ServiceAccount (tests/test_identity.py)
    account = by_kind(docs, "ServiceAccount")[by_kind(docs, "Deployment")["flow-engine"]["spec"]["template"]["spec"]["serviceAccountName"]]
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == "arn:aws:iam::123456789012:role/flow-engine"


@pytest.mark.parametrize("values_file", CI_VALUES)
def test_no_credentials_are_ever_rendered(values_file):
    text = rendered_text(values_file)
    assert not CREDENTIALS_IN_URL.search(text), CREDENTIALS_IN_URL.search(text)[0]
    if ci_values(values_file).get("database", {}).get("mode", "secret") == "secret":
        assert "postgresql" not in text  # every URL is a Secret key reference
    seen = 0
    for name, spec in pod_specs(rendered(values_file)):
        for c in spec["containers"]:
            for var in c.get("env", []):
                if var["name"].endswith("DATABASE_URL"):
                    seen += 1
                    if "value" in var:  # only a credential-free URL, only beside a Secrets Manager secret
                        assert not CREDENTIALS_IN_URL.search(var["value"]), (name, var)
                        assert env_of(c)[var["name"].replace("_URL", "_SECRET_ID")]["value"], (name, var)
                    else:
                        secret_ref(var)
    assert seen >= 4  # ingest, engine, query, migrations


def test_secret_mode_wires_the_primary_to_ingest_and_engine_and_the_replica_to_query():
    docs = rendered("default-values.yaml")
    primary = {"name": "flow-database", "key": "primary-url"}
    assert secret_ref(service_env(docs, "ingest")["FLOW_INGEST_DATABASE_URL"]) == primary
    assert secret_ref(service_env(docs, "engine")["FLOW_ENGINE_DATABASE_URL"]) == primary
    assert secret_ref(service_env(docs, "query")["FLOW_QUERY_DATABASE_URL"]) == {"name": "flow-database-replica", "key": "url"}
    owner = {"name": "flow-database", "key": "migration-url"}  # the migrations log in as the schema's owner
    for name, spec in pod_specs(docs):
        if name in ("flow-migrate", "flow-reconcile"):
            expected = owner if name == "flow-migrate" else primary
            assert secret_ref(env_of(spec["containers"][0])["FLOW_DATABASE_URL"]) == expected
    # The replica's Secret defaults to the primary's; its key does not.
    minimal = rendered("minimal-values.yaml")
    assert secret_ref(service_env(minimal, "query")["FLOW_QUERY_DATABASE_URL"]) == {"name": "flow-database", "key": "replica-url"}
    for svc in SERVICES:
        env = service_env(docs, svc)
        assert not [n for n in env if "SECRET_ID" in n or "SECRET_REFRESH" in n], svc
    assert "FLOW_QUERY_AWS_REGION" not in service_env(docs, "query")  # query needs AWS only for Secrets Manager


def test_secrets_manager_mode_passes_credential_free_urls_and_secret_ids():
    db = ci_values(SM_VALUES)["database"]
    docs = rendered(SM_VALUES)
    expected = {"ingest": (db["primaryUrl"], db["primarySecretId"]), "engine": (db["primaryUrl"], db["primarySecretId"]),
                "query": (db["replicaUrl"], db["replicaSecretId"])}
    assert db["primaryUrl"] != db["replicaUrl"]
    for svc, (url, secret_id) in expected.items():
        env, prefix = service_env(docs, svc), f"FLOW_{svc.upper()}_"
        assert env[prefix + "DATABASE_URL"] == {"name": prefix + "DATABASE_URL", "value": url}, svc
        assert env[prefix + "DATABASE_SECRET_ID"]["value"] == secret_id, svc
        assert env[prefix + "DATABASE_SECRET_REFRESH_SECONDS"]["value"] == str(db["secretRefreshSeconds"]), svc
        assert env[prefix + "AWS_REGION"]["value"] == "eu-west-1", svc  # where the secret is read from
        assert not [v for v in env.values() if "valueFrom" in v], svc
        # the replica's URL names the server; its secret (flow_app's on RDS names the primary) the login
        assert env.get(prefix + "DATABASE_SERVER_FROM_SECRET", {}).get("value") == (
            "false" if svc == "query" else None), svc
    # flow-migrate (as the schema's owner) and the reconciliation (as the application) read only
    # FLOW_DATABASE_URL: from the Kubernetes Secret still.
    jobs = {name: spec for name, spec in pod_specs(docs) if name in ("flow-migrate", "flow-reconcile")}
    assert {name: secret_ref(env_of(spec["containers"][0])["FLOW_DATABASE_URL"]) for name, spec in jobs.items()} == {
        "flow-migrate": {"name": "flow-database-migrate", "key": "owner-url"},
        "flow-reconcile": {"name": "flow-database-migrate", "key": "url"}}
    assert not [d for d in docs if d["kind"] == "Secret"]
    # The replica's secret defaults to the primary's; without migrations or reconciliation no
    # Kubernetes Secret is needed at all.
    bare = rendered(SM_VALUES, "--set", "database.replicaSecretId=,database.secretName=,migrations.enabled=false,reconcile.enabled=false")
    assert service_env(bare, "query")["FLOW_QUERY_DATABASE_SECRET_ID"]["value"] == db["primarySecretId"]
    assert "secretKeyRef" not in json.dumps(bare)


def test_the_migrations_never_share_the_services_login():
    docs = rendered("default-values.yaml")
    migrate = env_of(by_kind(docs, "Job")["flow-migrate"]["spec"]["template"]["spec"]["containers"][0])
    engine = service_env(docs, "engine")
    assert secret_ref(migrate["FLOW_DATABASE_URL"])["key"] == "migration-url"
    assert secret_ref(engine["FLOW_ENGINE_DATABASE_URL"])["key"] == "primary-url"
    same = helm_template("-f", CHART / "ci" / "default-values.yaml", "--set", "database.migrationKey=primary-url")
    assert same.returncode != 0 and "database.migrationKey must differ from database.primaryKey" in same.stderr


def test_auth_is_passed_to_ingest_and_query_only():
    # The audiences are a list, a comma-separated and a space-separated string in these three.
    for values_file in ("default-values.yaml", SM_VALUES, "minimal-values.yaml"):
        docs = rendered(values_file)
        auth = ci_values(values_file)["auth"]
        for svc in ("ingest", "query"):
            env = service_env(docs, svc)
            assert env["FLOW_AUTH_ENABLED"]["value"] == "true"
            assert env["FLOW_AUTH_ISSUER"]["value"] == auth["issuer"]
            assert env["FLOW_AUTH_AUDIENCE"]["value"] == "api://flow 11111111-1111-1111-1111-111111111111"
            assert ("FLOW_AUTH_DISCOVERY_URL" in env) == bool(auth.get("discoveryUrl"))
            assert ("FLOW_AUTH_ALGORITHMS" in env) == bool(auth.get("algorithms"))
        for name, spec in pod_specs(docs):
            if not name.endswith(("-ingest", "-query")):
                assert not [n for c in spec["containers"] for n in env_of(c) if n.startswith("FLOW_AUTH_")], name
    assert service_env(rendered("default-values.yaml"), "query")["FLOW_AUTH_ALGORITHMS"]["value"] == "RS256"
    disabled = rendered("keda-values.yaml")
    for svc in ("ingest", "query"):
        auth_env = {n: v["value"] for n, v in service_env(disabled, svc).items() if n.startswith("FLOW_AUTH_")}
        assert auth_env == {"FLOW_AUTH_ENABLED": "false"}


def settings_classes():
    from flow_engine.settings import EngineSettings
    from flow_ingest.settings import IngestSettings
    from flow_kit.auth import AuthSettings
    from flow_query.settings import QuerySettings
    return {"ingest": IngestSettings, "engine": EngineSettings, "query": QuerySettings}, AuthSettings


@pytest.mark.parametrize("values_file", CI_VALUES)
def test_the_services_accept_the_rendered_settings(values_file, monkeypatch):
    """Every FLOW_* variable is one the service reads (a misspelt one would be ignored silently), and
    its settings model, the same that checks them at start-up, accepts them all."""
    classes, auth_settings = settings_classes()
    docs = rendered(values_file)
    for svc, settings in classes.items():
        env = service_env(docs, svc)
        prefix = f"FLOW_{svc.upper()}_"
        known = {prefix + f.upper() for f in settings.model_fields}
        if svc != "engine":
            known |= {"FLOW_AUTH_" + f.upper() for f in auth_settings.model_fields}
        assert {n for n in env if n.startswith("FLOW_")} <= known, set(env) - known
        assert {n for n in env if not n.startswith("FLOW_")} <= TRACING_ENV
        for name in [n for n in os.environ if n.startswith("FLOW_")]:
            monkeypatch.delenv(name)
        for name, var in env.items():
            # A Secret's URL: any one the model accepts stands in for it.
            monkeypatch.setenv(name, var["value"] if "value" in var else "postgresql+asyncpg://u:p@db:5432/flow")
        settings()
        if svc != "engine":
            auth_settings()


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook_with_the_engine_image():
    docs = rendered("minimal-values.yaml")
    job = by_kind(docs, "Job")["flow-migrate"]
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    spec = job["spec"]["template"]["spec"]
    [c] = spec["containers"]
    assert spec["restartPolicy"] == "Never"
    assert c["image"] == by_kind(docs, "Deployment")["flow-engine"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert c["command"] == ["flow-migrate"]
    assert c["args"] == ["--sql-dir", "/app/sql"]  # the URL and its password never on a command line
    # the URL from a Secret, and how to verify the server (tests/test_database_tls.py)
    assert [e["name"] for e in c["env"]] == ["FLOW_DATABASE_URL", "FLOW_DATABASE_SSLMODE", "FLOW_DATABASE_SSLROOTCERT"]
    assert "valueFrom" in c["env"][0]
    # A pre-install hook runs before the chart's own ServiceAccount exists.
    assert "serviceAccountName" not in spec
    assert "COPY sql /app/sql" in dockerfile_targets()["engine"]


def test_reconciliation_is_an_optional_cron_job():
    assert not by_kind(rendered("minimal-values.yaml"), "CronJob")
    cron = by_kind(rendered("default-values.yaml"), "CronJob")["flow-reconcile"]
    assert (cron["spec"]["schedule"], cron["spec"]["timeZone"]) == ("30 2 * * *", "Europe/London")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    [c] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["python", "-m", "flow_engine.reconcile"]
    assert c["image"].startswith("123456789012.dkr.ecr.eu-west-1.amazonaws.com/flow-engine:0.1.0@sha256:")


def test_the_archive_is_an_optional_cron_job_with_its_own_role_and_a_safe_retention():
    assert "flow-archive" not in by_kind(rendered("minimal-values.yaml"), "CronJob")
    docs = rendered("monitoring-values.yaml")
    cron = by_kind(docs, "CronJob")["flow-archive"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [c] = spec["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert c["command"] == ["flow-archive", "run"] and c["image"] == \
        by_kind(docs, "Deployment")["flow-engine"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert (env["FLOW_ARCHIVE_BUCKET"], env["FLOW_ARCHIVE_RETENTION_DAYS"], env["FLOW_ARCHIVE_RETROACTIVE_DAYS"]) == \
        ("flow-archive-123456789012-us-east-1", "90", "7")
    account = by_kind(docs, "ServiceAccount")[spec["serviceAccountName"]]
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == "arn:aws:iam::123456789012:role/flow-archive"
    query = by_kind(docs, "Deployment")["flow-query"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["name"]: e.get("value") for e in query}["FLOW_QUERY_ARCHIVE_BUCKET"] == "flow-archive-123456789012-us-east-1"
    # query keeps archive files in /tmp: the chart makes room for its cache there, and only there.
    cache_mi = -(-int({e["name"]: e.get("value") for e in query}["FLOW_QUERY_ARCHIVE_CACHE_BYTES"]) // 2**20)
    tmp = {name: next(v["emptyDir"]["sizeLimit"] for v in pod["volumes"] if v["name"] == "tmp")
           for name, pod in pod_specs(docs)}
    assert tmp.pop("flow-query") == f"{64 + cache_mi}Mi" and set(tmp.values()) == {"64Mi"}, tmp
    # Shorter than the retroactive window + the queue's retention + the margin (7 + 14 + 7): refused.
    done = helm_template("-f", CHART / "ci" / "monitoring-values.yaml", "--set", "archive.retentionDays=27")
    assert done.returncode != 0 and "archive.retentionDays (27) must be at least" in done.stderr
    assert helm_template("-f", CHART / "ci" / "monitoring-values.yaml", "--set", "archive.retentionDays=28").returncode == 0


def test_images_pod_disruption_budgets_and_names():
    docs = rendered("default-values.yaml")
    images = {n: d["spec"]["template"]["spec"]["containers"][0]["image"] for n, d in by_kind(docs, "Deployment").items()}
    assert images["flow-ingest"] == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/flow-ingest:1.2.3"
    assert images["flow-query"] == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/flow-query:0.1.0"  # appVersion
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert set(pdbs) == {f"flow-{s}" for s in SERVICES}
    assert pdbs["flow-engine"]["spec"]["maxUnavailable"] == "50%"
    assert not by_kind(rendered("minimal-values.yaml"), "PodDisruptionBudget")
    for values_file in CI_VALUES:
        for d in rendered(values_file):
            assert DNS_LABEL.match(d["metadata"]["name"]) and len(d["metadata"]["name"]) <= 63, d["metadata"]["name"]


# --- the values schema and the chart's own checks --------------------------------------------------

@pytest.mark.parametrize("bad", [
    "bogus=1",                                # an unknown key at the top
    "ingest.bogus=1",                         # and deeper down
    "engine.scaledObject.bogus=1",
    "database.url=postgresql+asyncpg://u:p@h/flow",  # URLs are never values
    "database.querySecretName=x",             # renamed replicaSecretName in 0.2.0
    "database.primaryUrl=postgresql+asyncpg://h:5432/flow",  # a secretsManager key in secret mode
    "database.mode=vault",
    "auth.issuer=",                           # required when auth.enabled
    "auth.audience=",
    "auth.algorithms={HS256}",                # symmetric: never
    "auth.discoveryUrl=http://idp.example/.well-known/openid-configuration",  # keys in clear
    "ingest.maxBodyBytes=100",
    "query.maxReplicaLagSeconds=0",
    "ingest.replicas=two",                    # a bad type
    "engine.pollers=0",                       # out of range
    "query.logLevel=VERBOSE",                 # not one of the levels
    "securityContext.runAsUser=0",            # root
    "engine.terminationGracePeriodSeconds=30",
    "serviceAccount.roleArn=arn:aws:iam::123456789012:role/flow",  # one account for all: now one per workload
    "ingest.serviceAccount.roleArn=flow-ingest",                     # not a role's ARN
    "database.tls.mode=on",
])
def test_values_schema_rejects(bad):
    done = helm_template("-f", CHART / "ci" / "minimal-values.yaml", "--set", bad)
    assert done.returncode != 0 and "schema" in done.stderr, done.stderr


@pytest.mark.parametrize("bad", [
    "database.primaryUrl=postgresql+asyncpg://flow:s3cret@db.example:5432/flow",  # credentials
    "database.replicaUrl=postgresql+asyncpg://flow@db.example:5432/flow",          # even a user alone
    "database.primaryUrl=",                   # required in that mode
    "database.replicaUrl=",
    "database.primarySecretId=",
    "database.primarySecretId=not a secret",
    "database.primaryUrl=mysql://db.example/flow",
])
def test_values_schema_rejects_in_secrets_manager_mode(bad):
    done = helm_template("-f", CHART / "ci" / SM_VALUES, "--set", bad)
    assert done.returncode != 0 and "schema" in done.stderr, done.stderr


def test_values_schema_is_closed_at_every_object_level():
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_objects = []

    def walk(node, path):
        if isinstance(node, dict):
            if node.get("type") == "object":
                extra = node.get("additionalProperties")
                # false, or for user-chosen keys (annotations, node labels) string values only
                if extra is not False and extra != {"type": "string"}:
                    open_objects.append(path)
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for n, value in enumerate(node):
                walk(value, f"{path}/{n}")

    walk(schema, "#")
    assert not open_objects


NO_SCHEMA = "--skip-schema-validation"  # to reach the templates' own checks behind the schema's


@pytest.mark.parametrize(("args", "message"), [
    (AUTH_SET, "database.secretName"),
    (("--set", "database.secretName=db,database.tls.caConfigMap=rds-ca", *AUTH_SET), "messaging."),
    (("--set", "database.secretName=db", *AUTH_SET, "--set", "messaging.requestTopicArn=arn:aws:sns:us-east-1:123456789012:R,"
      "messaging.callbackTopicArn=arn:aws:sns:us-east-1:123456789012:C,messaging.queueUrl=https://sqs.example/1/Q"),
     "database.tls.caConfigMap"),  # verify-full (the default) needs the server's CA bundle
    (("-f", CHART / "ci" / "minimal-values.yaml", "--set", "auth.issuer=", NO_SCHEMA), "auth.issuer"),
    (("-f", CHART / "ci" / "minimal-values.yaml", "--set", "auth.audience=", NO_SCHEMA), "auth.audience"),
    (("-f", CHART / "ci" / "minimal-values.yaml", "--set", "auth.issuer=http://idp.example"), "https"),
    (("-f", CHART / "ci" / SM_VALUES, "--set", "database.secretName="), "also in secretsManager mode"),
    (("-f", CHART / "ci" / SM_VALUES, "--set", "database.primaryUrl=postgresql+asyncpg://u:p@db/flow", NO_SCHEMA),
     "must not hold a user or password"),
    (("-f", CHART / "ci" / "minimal-values.yaml", "--set", "engine.pollers=4,engine.databasePoolSize=5"), "pollers + 2"),
    (("-f", CHART / "ci" / "minimal-values.yaml", "--set", "engine.waitSeconds=20,engine.terminationGracePeriodSeconds=45"),
     "waitSeconds + 30"),
    (("-f", CHART / "ci" / "keda-values.yaml"), "needs KEDA"),
])
def test_chart_refuses_incomplete_or_inconsistent_values(args, message):
    done = helm_template(*args)
    assert done.returncode != 0 and message in done.stderr, done.stderr


# --- CloudFormation, images and skaffold -----------------------------------------------------------

def test_messaging_template_passes_cfn_lint():
    done = run(VENV / "cfn-lint", *sorted((ROOT / "infra" / "cloudformation").glob("*.yaml")))
    assert done.returncode in (0, 4), done.stdout + done.stderr  # 4: warnings only


def dockerfile_targets() -> dict[str, str]:
    """services/Dockerfile's text by stage name (`FROM ... AS name`)."""
    stages = re.split(r"^(?=FROM )", (ROOT / "services" / "Dockerfile").read_text(), flags=re.M)
    return {re.match(r"FROM \S+ AS (\w+)", s)[1]: s for s in stages if s.startswith("FROM ")}


@pytest.mark.parametrize("svc", SERVICES)
def test_the_dockerfile_installs_the_locked_dependencies_offline_and_runs_unprivileged(svc):
    stages = dockerfile_targets()
    assert re.search(r"^ARG BASE=\S+", (ROOT / "services" / "Dockerfile").read_text(), re.M)
    build, runtime, target = stages["build"], stages["runtime"], stages[svc]
    assert build.startswith("FROM ${BASE} AS build") and runtime.startswith("FROM ${BASE} AS runtime")
    assert target.startswith(f"FROM runtime AS {svc}")
    assert "PIP_NO_INDEX=1" in build  # every wheel from the context: no network in the build
    assert re.search(r"pip .*install --require-hashes --only-binary=:all: -r /src/requirements\.lock", build)
    assert "COPY --from=build /opt/venv /opt/venv\nCOPY --from=build /opt/flow /opt/flow" in runtime
    [user] = re.findall(r"^USER (\S+)", runtime, re.M)
    assert all(part.isdigit() and int(part) > 0 for part in user.split(":"))
    [cmd] = re.findall(r"^CMD (.+)$", target, re.M)
    assert json.loads(cmd) == [f"flow-{svc}"]  # exec form, not shell form
    [health] = re.findall(r"^HEALTHCHECK .* CMD (.+)$", target, re.M)
    assert json.loads(health) == [f"flow-{svc}", "health"]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".state", "!.state/images/wheels", ".venv", ".git", "tests", "bench"} <= set(ignored)
    assert any("__pycache__" in line for line in ignored)


def test_skaffold_builds_the_three_images_and_deploys_them_with_the_chart():
    [config] = parse_yaml((ROOT / "skaffold.yaml").read_text())
    assert config["apiVersion"].startswith("skaffold/v4") and config["kind"] == "Config"
    artifacts = {a["image"]: a for a in config["build"]["artifacts"]}
    assert set(artifacts) == {"flow-base"} | {f"flow-{s}" for s in SERVICES}
    assert (ROOT / artifacts["flow-base"]["docker"]["dockerfile"]) == ROOT / "services" / "base.Dockerfile"
    for svc in SERVICES:
        artifact = artifacts[f"flow-{svc}"]
        assert artifact["context"] == "."
        assert (ROOT / artifact["docker"]["dockerfile"]) == ROOT / "services" / "Dockerfile"
        assert artifact["docker"]["target"] == svc
        assert artifact["requires"] == [{"image": "flow-base", "alias": "BASE"}]
        assert artifact["hooks"]["before"] == [{"command": ["bash", "tools/images.sh", "wheels"]}]
    [release] = config["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"]).resolve() == CHART
    templates = release["setValueTemplates"]
    for svc in SERVICES:
        assert templates[f"{svc}.image.repository"] == f"{{{{.IMAGE_REPO_flow_{svc}}}}}"
        assert templates[f"{svc}.image.tag"] == f"{{{{.IMAGE_TAG_flow_{svc}}}}}"
    assert {p["name"] for p in config["profiles"]} >= {"keda"}
    # What skaffold would hand helm renders: images as skaffold names them, env defaults, setValues.
    sets = []
    for key, value in templates.items():
        image = re.fullmatch(r"\{\{\.IMAGE_(REPO|TAG)_flow_(\w+)\}\}", value)
        default = re.fullmatch(r'\{\{default "([^"]*)" \.\w+\}\}', value)
        assert image or default, value
        if image:
            value = f"registry.example/flow-{image[2]}" if image[1] == "REPO" else "0123abcd"
        else:
            value = default[1]
        sets += ["--set", f"{key}={value}"]
    for key, value in release["setValues"].items():
        sets += ["--set", f"{key}={value}"]
    keda = [p for p in config["profiles"] if p["name"] == "keda"][0]
    for patch in keda["patches"]:
        key = patch["path"].rsplit("/", 1)[1]
        sets += ["--set", f"{key}={patch['value']}"]
    done = helm_template(*KEDA_API, *sets)
    assert done.returncode == 0, done.stderr
    docs = parse_yaml(done.stdout)
    assert by_kind(docs, "Deployment")["flow-ingest"]["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/flow-ingest:0123abcd"
    assert by_kind(docs, "ScaledObject")
    assert service_env(docs, "query")["FLOW_AUTH_ENABLED"]["value"] == "false"  # local development
    # -p aws checks tokens, from the issuer and audiences the environment names.
    aws = {p["path"].rsplit("/", 1)[1]: p["value"] for p in [p for p in config["profiles"] if p["name"] == "aws"][0]["patches"]}
    assert aws["auth.enabled"] == "true"
    assert (aws["auth.issuer"], aws["auth.audience"]) == ("{{.FLOW_AUTH_ISSUER}}", "{{.FLOW_AUTH_AUDIENCE}}")


def test_traces_go_to_the_collector_only_when_one_is_given():
    with_collector, without = rendered("monitoring-values.yaml"), rendered("default-values.yaml")
    for svc in SERVICES:
        env = service_env(with_collector, svc)
        assert {n: env[n]["value"] for n in TRACING_ENV} == {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4318",
            "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}
        assert not TRACING_ENV & set(service_env(without, svc))


# --- security review findings 6b, 6c and 8 ---------------------------------------------------------

def test_health_ports_docs_and_the_cursor_key():
    docs = rendered("default-values.yaml")
    assert {svc: service_env(docs, svc)[f"FLOW_{svc.upper()}_HEALTH_PORT"]["value"] for svc in SERVICES} == \
        {"ingest": "9001", "engine": "9003", "query": "9002"}
    for svc in ("ingest", "query"):
        assert service_env(docs, svc)[f"FLOW_{svc.upper()}_DOCS"]["value"] == "false"
    assert "FLOW_QUERY_CURSOR_KEY" not in service_env(docs, "query")
    keyed = rendered("default-values.yaml", "--set", "query.cursorKeySecret.name=flow-cursor,docs.enabled=true")
    assert secret_ref(service_env(keyed, "query")["FLOW_QUERY_CURSOR_KEY"]) == {"name": "flow-cursor", "key": "cursor-key"}
    assert service_env(keyed, "ingest")["FLOW_INGEST_DOCS"]["value"] == "true"
    [monitor] = by_kind(rendered("monitoring-values.yaml"), "ServiceMonitor").values()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["health"]
    same = helm_template("-f", CHART / "ci" / "minimal-values.yaml", "--set", "query.healthPort=8002")
    assert same.returncode != 0 and "healthPort must differ" in same.stderr


def _policies(docs) -> dict:
    return {name.rsplit("-", 1)[1]: p["spec"] for name, p in by_kind(docs, "NetworkPolicy").items()}


def _ports(rule) -> set:
    return {(p["port"], p.get("protocol", "TCP")) for p in rule.get("ports", [])}


@pytest.mark.parametrize("values_file", CI_VALUES)
def test_network_policies_admit_only_the_api_and_monitoring_and_limit_egress(values_file):
    docs = rendered(values_file)
    policies = _policies(docs)
    values = ci_values(values_file)
    expected = {"ingest", "engine", "query", "migrate"} | ({"reconcile"} if values.get("reconcile", {}).get("enabled") else set()) \
        | ({"archive"} if values.get("archive", {}).get("enabled") else set())
    assert set(policies) == expected
    labels_of = {name.rsplit("-", 1)[1]: spec["selector"]["matchLabels"] for name, spec in
                 ((n, d["spec"]) for n, d in by_kind(docs, "Deployment").items())}
    for svc in SERVICES:
        spec = policies[svc]
        assert spec["podSelector"]["matchLabels"] == labels_of[svc]
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        [c] = by_kind(docs, "Deployment")[f"flow-{svc}"]["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        monitoring = [r for r in spec["ingress"] if _ports(r) == {(ports["health"], "TCP")}]
        assert [r["from"] for r in monitoring] == [[{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "monitoring"}}}]]
        api = [r for r in spec["ingress"] if r not in monitoring]
        if svc == "engine":
            assert api == []  # nothing but monitoring reaches the engine
        else:
            assert [(_ports(r), r["from"]) for r in api] == [({(ports["http"], "TCP")}, [{"namespaceSelector": {}}])]
    for name, spec in policies.items():
        egress = spec["egress"]
        dns, postgres = egress[0], egress[1]
        assert _ports(dns) == {(53, "UDP"), (53, "TCP")}
        assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                              "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
        assert _ports(postgres) == {(5432, "TCP")} and all("ipBlock" in t for t in postgres["to"])
        if name in ("migrate", "reconcile"):
            assert len(egress) == 2 and spec["ingress"] == []
        else:
            # The archive job sends no traces: HTTPS (S3, Secrets Manager) only.
            collector = [{(4318, "TCP")}] if values.get("tracing", {}).get("otlpEndpoint") and name != "archive" else []
            assert [_ports(r) for r in egress[2:]] == [{(443, "TCP")}, *collector]
            assert egress[2]["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0"}}]
    migrate = by_kind(docs, "NetworkPolicy")["flow-migrate"]["metadata"]["annotations"]
    assert migrate["helm.sh/hook"] == "pre-install,pre-upgrade"


def test_network_policy_values():
    network = {"enabled": True, "monitoringNamespace": "prom", "apiFromNamespaceLabels": {"team": "web"},
               "apiFromPodLabels": {"role": "gateway"}, "postgres": {"cidrs": ["10.0.8.0/24"], "port": 6432},
               "https": {"cidrs": ["10.0.9.0/24"]}, "collectorPort": 4318}
    done = helm_template("-f", CHART / "ci" / "minimal-values.yaml", "--set-json", f"networkPolicy={json.dumps(network)}",
                         "--set", "tracing.otlpEndpoint=http://otel.observability:4318")
    assert done.returncode == 0, done.stderr
    docs = parse_yaml(done.stdout)
    policies = _policies(docs)
    query = policies["query"]
    assert query["ingress"][0]["from"] == [{"namespaceSelector": {"matchLabels": {"team": "web"}},
                                            "podSelector": {"matchLabels": {"role": "gateway"}}}]
    assert query["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "prom"}
    assert query["egress"][1] == {"to": [{"ipBlock": {"cidr": "10.0.8.0/24"}}], "ports": [{"port": 6432, "protocol": "TCP"}]}
    assert query["egress"][2]["to"] == [{"ipBlock": {"cidr": "10.0.9.0/24"}}]
    assert _ports(query["egress"][3]) == {(4318, "TCP")}  # the collector, with tracing on
    assert not by_kind(rendered("minimal-values.yaml", "--set", "networkPolicy.enabled=false"), "NetworkPolicy")


def test_entitlements_are_rendered_into_flow_entitlements_for_ingest_and_query_only(tmp_path):
    for svc in ("ingest", "query"):  # unset by default: no entitlement checks
        assert "FLOW_ENTITLEMENTS" not in service_env(rendered("default-values.yaml"), svc)
    grants = {"partner-a": {"branches": ["0001"], "maxAmount": "1000000.00"}, "default": {"branches": []}}
    values = tmp_path / "entitlements.yaml"
    values.write_text(json.dumps({"entitlements": grants}))
    docs = rendered("default-values.yaml", "-f", str(values))
    for svc in ("ingest", "query"):
        assert json.loads(service_env(docs, svc)["FLOW_ENTITLEMENTS"]["value"]) == grants
    assert "FLOW_ENTITLEMENTS" not in service_env(docs, "engine")
    for bad in ({"partner-a": {"branches": ["0001"], "maxAmount": 100}}, {"partner-a": {"branch": ["0001"]}},
                {"partner-a": {"branches": ["00-1"]}}):
        values.write_text(json.dumps({"entitlements": bad}))
        assert helm_template("-f", CHART / "ci" / "default-values.yaml", *KEDA_API, "-f", str(values)).returncode != 0
