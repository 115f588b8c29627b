"""`make clean`'s part outside the clone (tools/devstack/postgres.py, `clean`): the clusters this clone
made elsewhere are stopped and removed, nobody else's. Run against a throwaway temporary folder standing
for /var/tmp and /tmp, so the test stack and other clones' clusters are never touched."""

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tools.devstack import postgres
from tools.devstack import stack as stack_module
from tools.devstack.postgres import MARKER, PostgresCluster, clean, leftovers, outside_folder
from tools.devstack.processes import free_port
from tools.devstack.stack import ROOT, Stack, StackConfig


@pytest.fixture
def place():
    """A temporary folder the postgres user can reach (pytest's tmp_path sits below a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="flow-clean-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_clusters_of_this_clone_are_stopped_and_removed_and_no_one_elses(place, tmp_path):
    state = tmp_path / ".state" / "run"  # make run's state folder, which the postgres user "could not reach"
    mine = outside_folder(state, place)
    cluster = PostgresCluster(mine / "data", free_port(), fast=True)
    cluster.start()  # running, as make run left it
    test_run = place / "flow-test-abc123"  # a test run's state, kept (FLOW_KEEP_TEST_STATE) or left by a kill
    (test_run / "postgres").mkdir(parents=True)
    (test_run / "postgres" / MARKER).write_text(f"{ROOT}\n")
    (test_run / "logs").mkdir()
    other_clone = place / "flow-postgres-0123456789ab"
    other_clone.mkdir()
    (other_clone / MARKER).write_text("/somewhere/else/flow\n")
    unmarked = place / "flow-test-unmarked"
    unmarked.mkdir()
    try:
        assert leftovers([state], [place], outside=place) == [mine, test_run]
        assert clean([state], [place], outside=place) == [mine, test_run]
        assert not mine.exists() and not test_run.exists()
        assert cluster._proc.wait(10) is not None  # the server was stopped first
        assert other_clone.exists() and unmarked.exists()
        assert clean([state], [place], outside=place) == []  # nothing left: a second run is a no-op
    finally:
        cluster.stop()


def test_stop_server_ignores_a_stale_pid_file(place):
    data_dir = place / "data"
    data_dir.mkdir()
    (data_dir / "postmaster.pid").write_text("1\n/elsewhere\n")  # pid 1 is alive, but serves no cluster here
    assert postgres.stop_server(data_dir) is None


def test_the_stack_keeps_an_unreachable_cluster_where_clean_looks(monkeypatch, tmp_path):
    """An unreachable state folder puts the cluster in outside_folder, where clean looks."""
    class Found(Exception):
        pass

    class Probe:
        def __init__(self, data_dir, port, fast=False, **_):
            self.data_dir = data_dir

        def reachable(self):
            return False

        def start(self):
            raise Found(self.data_dir)

    class NoIssuer:
        def __init__(self, *args, **kwargs):
            pass

        def start(self):
            return self

    monkeypatch.setattr(stack_module, "PostgresCluster", Probe)
    monkeypatch.setattr(stack_module, "DevIssuer", NoIssuer)
    state = tmp_path / "state"
    with pytest.raises(Found) as found:
        Stack(StackConfig(state_dir=state)).start_infrastructure()
    assert found.value.args[0].parent == outside_folder(state)


def test_clean_runs_without_the_venv_and_finds_the_test_stacks_own_cluster(stack):
    """The entry make clean calls, on a Python with no packages (-S), listing only (--dry-run): this
    session's cluster, outside the clone, is this clone's, so it is listed; nothing is removed."""
    done = subprocess.run([shutil.which("python3.11") or "python3", "-S", "-m", "tools.devstack", "clean", "--dry-run"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    listed = [Path(line.removeprefix("devstack: would remove ")) for line in done.stdout.splitlines()]
    assert any(stack.postgres.data_dir.is_relative_to(folder) for folder in listed), done.stdout
    assert stack.postgres.query("SELECT 1") == "1"


def test_make_clean_cleans_outside_before_the_venv_goes():
    done = subprocess.run(["make", "-n", "clean"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.index("-m tools.devstack clean") < done.stdout.index("rm -rf .state .venv")
