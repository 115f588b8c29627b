"""FLOW's images, built and run: what a cluster gets is what these tests ran.

tools/images.sh builds flow-ingest, flow-engine and flow-query (services/Dockerfile) with buildah.
The tests look inside them (the chart's user, HEALTHCHECK, nothing of the build machine in any
layer), then start a stack of their own whose schema is applied by the engine image's flow-migrate
and whose three services run from the images as the chart's pods would (tools/devstack/images.py:
environment and security settings from `helm template`), run the design's integration test against
it, and stop the engine with SIGTERM. hadolint and checkov check the Dockerfiles.

Building needs root (or a machine with buildah and podman): elsewhere the image tests skip, saying
what to install; with CI set, a missing builder fails."""

import asyncio
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from flow_kit.migrations import load_scripts
from tests.conftest import listen
from tests.test_chart import ROOT, STATE, by_kind, chart_tools, rendered  # noqa: F401  (chart_tools: helm)
from tests.test_integration import check_end_to_end
from tools.devstack.images import IMAGE_TAG, containers_env
from tools.devstack.processes import free_port
from tools.devstack.stack import Stack, StackConfig

SERVICES = ("ingest", "engine", "query")
DOCKERFILES = [ROOT / "services" / "Dockerfile", ROOT / "services" / "base.Dockerfile"]
POLICY = STATE / "policy-venv" / "bin"


def run(*args, env=None, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)


# --- static checks (no builder needed) ----------------------------------------------------------

def test_dockerfiles_pass_hadolint():
    done = run(POLICY / "hadolint", *DOCKERFILES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfiles_pass_checkov():
    done = run(POLICY / "checkov", "--quiet", "--compact", "--skip-download", "--framework", "dockerfile",
               *[arg for path in DOCKERFILES for arg in ("-f", path)])
    assert done.returncode == 0, done.stdout + done.stderr
    # Every suppression says why.
    for path in DOCKERFILES:
        for line in path.read_text().splitlines():
            if "checkov:skip=" in line:
                assert re.search(r"checkov:skip=CKV_\w+: \S", line), line


# --- the images ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def podman_env() -> dict[str, str]:
    """Builds the images (tools/images.sh, cached in .state/) and returns the environment podman needs."""
    started = time.perf_counter()
    done = run("bash", ROOT / "tools" / "images.sh")
    if done.returncode == 3 and not os.environ.get("CI"):
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"images built or found in {time.perf_counter() - started:.0f} s:\n{done.stdout}")
    return {**os.environ, **containers_env()}


def podman(env, *args, check=True) -> subprocess.CompletedProcess:
    done = run("podman", *args, env=env)
    assert done.returncode == 0 or not check, done.stdout + done.stderr
    return done


def image_info(env, service: str) -> dict:
    [info] = json.loads(podman(env, "image", "inspect", f"flow-{service}:{IMAGE_TAG}").stdout)
    return info


@pytest.mark.parametrize("service", SERVICES)
def test_images_run_as_the_chart_says_with_a_healthcheck(podman_env, service):
    chart = rendered("default-values.yaml")
    pod = by_kind(chart, "Deployment")[f"flow-{service}"]["spec"]["template"]["spec"]
    security = pod["securityContext"]
    info = image_info(podman_env, service)
    config = info["Config"]
    assert config["User"] == f"{security['runAsUser']}:{security['runAsGroup']}"
    port = pod["containers"][0]["ports"][0]["containerPort"]
    assert f"{port}/tcp" in config["ExposedPorts"]
    assert info["Healthcheck"]["Test"] == ["CMD", f"flow-{service}", "health"]  # kept: docker format
    assert config["Cmd"] == [f"flow-{service}"] and not config.get("Entrypoint")
    assert config["StopSignal"] in ("SIGTERM", "15")
    # Debian's own interpreter, and the services' venv without pip (only what runs).
    done = podman(podman_env, "run", "--rm", "--network=none", "--read-only", "--entrypoint=python",
                  f"flow-{service}:{IMAGE_TAG}", "-c",
                  "import sys, importlib.util; print(sys.version.split()[0], sys.base_prefix, "
                  "importlib.util.find_spec('pip') is None)")
    version, prefix, no_pip = done.stdout.split()
    assert version.startswith("3.11.") and prefix == "/usr" and no_pip == "True"


def test_the_engine_image_carries_the_migrations_the_chart_runs(podman_env):
    done = podman(podman_env, "run", "--rm", "--network=none", "--entrypoint=ls", f"flow-engine:{IMAGE_TAG}", "/app/sql")
    assert done.stdout.split() == sorted(p.name for p in (ROOT / "sql").glob("*.sql"))


def _host_secrets() -> list[bytes]:
    """What of this machine must never be in an image: certificate authorities it trusts beyond
    Debian's own (a TLS proxy's, say), its proxy settings, and secret-looking environment values."""
    found = []
    debian = {p.read_text() for p in Path("/usr/share/ca-certificates").rglob("*.crt")}
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    pems = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", bundle.read_text(), re.S) if bundle.exists() else []
    local = [p.read_text() for p in Path("/usr/local/share/ca-certificates").rglob("*.crt")]
    for pem in pems + local:
        if not any(pem.strip() in known for known in debian):
            lines = pem.strip().splitlines()[1:-1]
            found.append(lines[len(lines) // 2].encode())  # a line of its body identifies it
    for name, value in os.environ.items():
        secretish = re.search(r"proxy|secret|token|password|key", name, re.I)
        if secretish and len(value) >= 8 and not value.startswith("/"):
            found.append(value.encode())
    return sorted(set(found))


def leaks(env, image: str, archive: Path, seen: set[str]) -> list[str]:
    """What of this machine `image` holds: files (in any layer, even one a later layer hides) that
    carry its trust settings or secrets, and environment variables that name them. Layers in `seen`
    were scanned before and are skipped."""
    secrets = _host_secrets()
    forbidden = re.compile(r"(^|/)(\.netrc|\.pypirc|pip\.conf|\.docker/config\.json|\.aws/credentials|"
                           r"apt/auth\.conf(\.d/.+)?|usr/local/share/ca-certificates/.+)$")
    [info] = json.loads(podman(env, "image", "inspect", image).stdout)
    found = [e for e in info["Config"]["Env"] if re.match(r"(?i)\w*(proxy|cert|ca_bundle|pip_)\w*=", e)]
    podman(env, "save", "--format=docker-archive", "-o", archive, image)
    with tarfile.open(archive) as saved:
        for member in saved.getmembers():
            if not member.name.endswith(".tar") or member.name in seen:
                continue
            seen.add(member.name)
            with tarfile.open(fileobj=saved.extractfile(member)) as layer:
                for entry in layer:
                    if forbidden.search(entry.name):
                        found.append(entry.name)
                    elif entry.isfile() and entry.size and any(s in layer.extractfile(entry).read() for s in secrets):
                        found.append(entry.name)
    archive.unlink()
    return found


def test_nothing_of_the_build_machine_is_in_any_layer(podman_env, tmp_path):
    seen: set[str] = set()
    for service in SERVICES:
        assert leaks(podman_env, f"flow-{service}:{IMAGE_TAG}", tmp_path / "image.tar", seen) == []
    assert len(seen) >= 3


# --- the services, run from the images ----------------------------------------------------------

@pytest.fixture(scope="module")
def image_stack(podman_env) -> Stack:
    state = Path(tempfile.mkdtemp(prefix="flow-images-"))
    state.chmod(0o755)  # the postgres user must reach the cluster inside it
    config = StackConfig(
        state_dir=state, pg_port=free_port(), replica_port=free_port(), localstack_port=free_port(),
        ingest_port=free_port(), query_port=free_port(), engine_port=free_port(), issuer_port=free_port(),
        fast=True, log_dir=state / "logs", images=True,
        messaging_parameters={"VisibilityTimeoutSeconds": "10"},
        chart_values={"engine": {"waitSeconds": 1}},
    )
    stack = Stack(config)
    stack.start()
    yield stack
    stack.stop()
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
async def image_http(image_stack):
    token = image_stack.issuer.mint(("flow.read", "flow.write"))
    async with httpx.AsyncClient(timeout=30, headers={"authorization": f"Bearer {token}"}) as client:
        yield client


@pytest.fixture
async def image_callbacks(image_stack):
    async for listener in listen(image_stack, image_stack.outputs["CallbackTopicArn"]):
        yield listener


def test_the_schema_was_applied_by_the_engine_image(image_stack):
    scripts = [script.name for script in load_scripts(ROOT / "sql")]  # not sql/schema.sql, the snapshot
    applied = image_stack.postgres.query("SELECT string_agg(name, ' ' ORDER BY name) FROM public.flow_schema_script",
                                         database="flow")
    assert applied.split() == scripts
    # Run again, as every upgrade's hook does: nothing left to apply.
    assert "flow-migrate: 0 script(s) applied" in image_stack.images.migrate("flow-migrate-again")


@pytest.mark.parametrize("service", SERVICES)
def test_containers_run_with_the_chart_security_settings(image_stack, service):
    name = f"flow-{service}" if service != "engine" else f"flow-engine-{image_stack.config.engine_port}"
    [info] = json.loads(image_stack.images.podman("inspect", name).stdout)
    assert info["Config"]["User"] == "10001:10001"
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert info["EffectiveCaps"] in (None, [])
    assert "no-new-privileges" in info["HostConfig"]["SecurityOpt"]
    assert [m["Destination"] for m in info["Mounts"]] == [] and list(info["HostConfig"]["Tmpfs"]) == ["/tmp"]
    probe = ("import os, pathlib; pathlib.Path('/tmp/x').write_text('x'); print(os.getuid(), os.getgid());"
             "pathlib.Path('/app/x').write_text('x')")
    done = image_stack.images.podman("exec", name, "python", "-c", probe)
    assert done.stdout.split() == ["10001", "10001"] and "Read-only file system" in done.stderr
    assert image_stack.images.podman("healthcheck", "run", name).returncode == 0  # the image's HEALTHCHECK


async def test_the_design_integration_test_passes_against_the_images(image_stack, image_http, image_callbacks, report):
    ingest = f"http://127.0.0.1:{image_stack.config.ingest_port}"
    query = f"http://127.0.0.1:{image_stack.config.query_port}"
    seconds = await check_end_to_end(ingest, query, image_http, image_callbacks, 300)
    report(f"integration from the images: 300 postings over 50 accounts: {seconds}")


async def test_the_engine_container_stops_on_sigterm_within_its_grace_period_and_loses_nothing(
        image_stack, image_http, image_callbacks, report):
    ingest = f"http://127.0.0.1:{image_stack.config.ingest_port}"
    branch, today = f"S{uuid.uuid4().hex[:6]}", datetime.now(UTC).date().isoformat()
    bodies = [{"id": str(uuid.uuid4()), "tracekey": str(uuid.uuid4()), "branch": branch, "account": f"{n % 7:09d}",
               "amount": "1.00", "debitcredit": "C", "eventcode": 1, "dateref": today, "description": "sigterm"}
              for n in range(1500)]
    sent = asyncio.Event()

    async def send() -> None:
        for start in range(0, len(bodies), 100):
            response = await image_http.post(f"{ingest}/v1/transactions/batch", json={"items": bodies[start:start + 100]})
            assert response.status_code == 202, response.text
            await asyncio.sleep(0.05)
        sent.set()

    sender = asyncio.create_task(send())
    await image_callbacks.collect({bodies[0]["tracekey"]}, timeout=60)  # the engine is at work
    [engine] = image_stack.engines
    name = f"flow-engine-{image_stack.config.engine_port}"
    signalled = time.monotonic()
    assert image_stack.images.podman("kill", "--signal=SIGTERM", name).returncode == 0  # as the kubelet does
    grace = image_stack.images.pods.pods["engine"]["terminationGracePeriodSeconds"]
    status = await asyncio.to_thread(engine.wait, grace)
    stopped = time.monotonic() - signalled
    assert status == 0, f"the engine exited with {status}"
    assert stopped < grace
    await sender
    image_stack.engines.clear()
    await asyncio.to_thread(image_stack.start_engine, image_stack.config.engine_port)
    outcomes = await image_callbacks.collect({b["tracekey"] for b in bodies}, timeout=180)
    assert {b["tracekey"] for b in bodies} <= outcomes.keys()
    assert {o["status"] for b in bodies for o in outcomes[b["tracekey"]]} == {"applied"}
    applied = image_stack.postgres.query(f"SELECT count(*) FROM flow.transaction WHERE branch = '{branch}'", database="flow")
    assert int(applied) == len(bodies)  # each once
    report(f"images: the engine container stopped {stopped:.1f} s after SIGTERM (grace {grace} s); "
           f"{len(bodies)} postings applied once each after its restart")
