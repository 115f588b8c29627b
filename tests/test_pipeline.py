"""The delivery pipeline (.github/workflows): actionlint finds nothing; every step calls a repository script
or one of a few actions that only move things (checkout, artifacts, AWS credentials), so no logic lives
only in YAML and a person can run each step by hand; and the stages are gated: a release's tests, then
images built once, then dev, staging and prod in turn, each needing the one before and checking its test
evidence, prod behind its GitHub environment's approval, every deploy's evidence kept.
actionlint comes from tools/pipeline-tools.sh (into .state/pipeline-venv)."""

import json
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = ROOT / ".state" / "pipeline-venv" / "bin" / "actionlint"
CHART_PYTHON = ROOT / ".state" / "chart-venv" / "bin" / "python"
# Actions that move things and decide nothing.
MOVERS = {"actions/checkout", "actions/upload-artifact", "actions/download-artifact", "aws-actions/configure-aws-credentials"}
# A step's whole command: one repository script and literal words (no pipes, lists, substitutions).
COMMAND = re.compile(r"^(?P<script>[A-Za-z0-9_./-]+)( [A-Za-z0-9_./=-]+)*$")


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    for script in ("tools/pipeline-tools.sh", "tools/chart-tools.sh"):
        done = subprocess.run(["bash", script], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stdout + done.stderr


@cache
def workflows() -> dict[str, dict]:
    """Each workflow by file name, parsed by PyYAML (in the chart tools' venv); YAML 1.1 reads `on` as true."""
    done = subprocess.run([CHART_PYTHON, "-c", "import json, sys, yaml; print(json.dumps({p: yaml.safe_load(open(p)) "
                           "for p in sys.argv[1:]}))", *sorted(WORKFLOWS.glob("*.yml"))], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return {Path(p).name: {("on" if k is True or k == "true" else k): v for k, v in doc.items()}
            for p, doc in json.loads(done.stdout).items()}


def steps():
    for name, doc in workflows().items():
        for job_name, job in doc["jobs"].items():
            for step in job.get("steps", []):
                yield f"{name}:{job_name}", step


def test_actionlint_finds_nothing():
    done = subprocess.run([ACTIONLINT, "-no-color"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def test_actionlint_does_flag_a_bad_workflow(tmp_path):
    """Guards the test above against passing vacuously."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.event.issue.title }}\n"
                   "      - uses: actions/checkout@v4\n        with: {nonsense: 1}\n")
    done = subprocess.run([ACTIONLINT, "-no-color", bad], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1 and "nonsense" in done.stdout


def test_every_step_calls_a_repository_script_or_only_moves_things():
    scripts = set()
    for where, step in steps():
        if "uses" in step:
            assert step["uses"].split("@")[0] in MOVERS, f"{where}: {step['uses']} is not one of {MOVERS}"
            assert "run" not in step
            continue
        command = step["run"].strip()
        match = COMMAND.match(command)
        assert match, f"{where}: `{command}` is more than one repository script with literal arguments"
        script = ROOT / match["script"]
        assert script.is_file() and script.stat().st_mode & 0o111, f"{where}: {match['script']} is not an executable file of the repository"
        scripts.add(script)
    # The jobs that call a workflow call one of the repository's own.
    for doc in workflows().values():
        for job in doc["jobs"].values():
            if "uses" in job:
                assert (ROOT / job["uses"]).is_file(), job["uses"]
    assert {s.name for s in scripts} >= {"runner-setup.sh", "test.sh", "build-images.sh", "deploy.sh", "attach-evidence.sh"}
    for script in scripts:
        assert subprocess.run(["bash", "-n", script]).returncode == 0, script


def test_every_change_runs_make_test_as_root_and_keeps_its_evidence():
    ci = workflows()["ci.yml"]
    assert {"push", "pull_request", "workflow_call"} <= set(ci["on"])
    [job] = ci["jobs"].values()
    assert job["container"]["image"] == "debian:bookworm" and "--privileged" in job["container"]["options"]
    assert [s.get("run") for s in job["steps"] if "run" in s] == ["tools/pipeline/runner-setup.sh", "tools/pipeline/test.sh"]
    upload = job["steps"][-1]
    assert upload["if"] == "always()" and upload["with"]["name"] == "tests"
    assert "make test" in (ROOT / "tools" / "pipeline" / "test.sh").read_text()


def test_a_release_goes_stage_by_stage_each_only_after_the_one_before():
    release = workflows()["release.yml"]
    assert release["on"] == {"release": {"types": ["published"]}}
    jobs = release["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/ci.yml"
    assert jobs["images"]["needs"] == "test"
    gates = {"dev": (["test", "images"], "tests"), "staging": ("dev", "evidence-dev"), "prod": ("staging", "evidence-staging")}
    for env, (needs, gate) in gates.items():
        assert jobs[env]["needs"] == needs and jobs[env]["uses"] == "./.github/workflows/deploy.yml"
        assert jobs[env]["with"] == {"environment": env, "gate": gate}
    # No job is allowed to fail and let the next go on.
    for doc in workflows().values():
        for job in doc["jobs"].values():
            assert "continue-on-error" not in job and all("continue-on-error" not in s for s in job.get("steps", []))


def test_a_deploy_is_gated_approved_in_prod_and_keeps_its_evidence():
    [job] = workflows()["deploy.yml"]["jobs"].values()
    # The GitHub environment of the same name: its variables, its secret, and for prod its required reviewers.
    assert job["environment"]["name"] == "${{ inputs.environment }}"
    steps = job["steps"]
    downloads = [s["with"] for s in steps if s.get("uses", "").startswith("actions/download-artifact")]
    assert downloads == [{"name": "images", "path": ".state/evidence/images/"}, {"name": "${{ inputs.gate }}", "path": ".state/gate/"}]
    deploy = (ROOT / "tools" / "pipeline" / "deploy.sh").read_text()
    assert "--gate .state/gate" in deploy and "tools/deploy" in deploy and "tools.smoke" in deploy
    [upload] = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")]
    assert upload["if"] == "always()" and upload["with"]["name"] == "evidence-${{ inputs.environment }}"
    assert upload["with"]["path"] == ".state/evidence/${{ inputs.environment }}/${{ github.run_id }}-${{ github.run_attempt }}/"
    assert job["env"]["FLOW_RUN_ID"] == "${{ github.run_id }}-${{ github.run_attempt }}"
    [attach] = [s for s in steps if s.get("run") == "tools/pipeline/attach-evidence.sh"]
    assert attach["if"] == "inputs.environment == 'prod'"
    # Secrets only from the environment's secrets, never written into the workflow.
    assert all(v.startswith("${{ ") for k, v in job["env"].items())
