"""services/ stays clean: ruff's lint rules, ruff's formatting, and mypy over the six packages (what they
check is pyproject.toml's [tool.ruff] and [tool.mypy]). The tools come from tools/lint-tools.sh, into
.state/lint-venv together with the app's dependencies from requirements.lock, so mypy, running there, sees
exactly the libraries the services run with; the services themselves it reads from services/. mypy keeps
its cache in .state/mypy-cache, ruff in .state/ruff-cache."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".state" / "lint-venv" / "bin"


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    done = subprocess.run(["bash", "tools/lint-tools.sh"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def clean(tool: str, *args: str) -> None:
    """Runs the tool from the repository's root; fails with what it printed unless it exits 0."""
    done = subprocess.run([TOOLS / tool, *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        pytest.fail(f"{tool} {' '.join(args)} (exit {done.returncode}):\n{done.stdout}{done.stderr}", pytrace=False)


def test_ruff_check():
    clean("ruff", "check", "--no-fix", "--output-format", "concise", "services/")


def test_ruff_format():
    """The files `ruff format services/` would change (`ruff format --diff services/` shows how)."""
    clean("ruff", "format", "--check", "--output-format", "concise", "services/")


def test_mypy():
    clean("mypy", "--config-file", "pyproject.toml")
