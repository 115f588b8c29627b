"""A PostgreSQL cluster of the stack's own, run as the `postgres` user when started by root; and
`clean`, which stops and removes the clusters this clone left outside it (`make clean`). Standard
library only: `make clean` runs it even when .venv is gone."""

import contextlib
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from .processes import port_is_free, run, spawn, stop, wait_until

__all__ = ["HBA", "MARKER", "OUTSIDE", "REPLICATION_SLOT", "PostgresCluster", "clean", "find_bindir", "leftovers",
           "outside_folder", "stop_server"]

ROOT = Path(__file__).resolve().parents[2]  # the clone this code belongs to
# Where a cluster goes when the postgres user cannot reach the state folder (stack.py), and the file
# naming the clone that made a cluster's folder, so `clean` knows its own wherever they are.
OUTSIDE = Path("/var/tmp")
MARKER = "flow-clone"

REPLICATION_SLOT = "flow_replica"
# The superuser (migrations, tests, the stack itself) and replication (pg_basebackup, the standby)
# are trusted on loopback; every other role, the services' flow_app included, must give its password.
HBA = """\
# Written by tools/devstack on every start.
# TYPE  DATABASE     USER      ADDRESS        METHOD
local   all          postgres                 trust
host    all          postgres  127.0.0.1/32   trust
host    replication  postgres  127.0.0.1/32   trust
local   all          all                      scram-sha-256
host    all          all       127.0.0.1/32   scram-sha-256
"""

_INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, postgres) were not found. Install them, e.g. on Debian/Ubuntu "
    "`sudo apt-get install postgresql` (FLOW's scripts do this themselves when run as root), or set "
    "FLOW_PG_BINDIR to the folder holding initdb, or FLOW_DEV_DATABASE_URL to use an existing server."
)


def outside_folder(state_dir: Path, base: Path = OUTSIDE) -> Path:
    """The folder of the cluster of `state_dir` when kept outside it: named after the state folder, so
    each clone (each state folder) has its own (tools/devstack/stack.py keeps its cluster there)."""
    return base / f"flow-postgres-{hashlib.sha1(str(state_dir).encode()).hexdigest()[:12]}"


def find_bindir() -> Path | None:
    candidates = []
    if os.environ.get("FLOW_PG_BINDIR"):
        candidates.append(Path(os.environ["FLOW_PG_BINDIR"]))
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(Path(out.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    candidates += [Path(p).parent for p in [shutil.which("initdb")] if p]
    for path in candidates:
        if (path / "initdb").exists() and (path / "postgres").exists():
            return path
    return None


class PostgresCluster:
    """`data_dir` holds the cluster; the socket and the log sit beside it.

    With `primary`, the cluster is a streaming hot standby of that one: made the first time with
    `pg_basebackup -R` (through a replication slot, so the primary keeps the WAL it still needs),
    and afterwards just started again.
    """

    def __init__(self, data_dir: Path, port: int, fast: bool = False, primary: "PostgresCluster | None" = None,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.data_dir = data_dir
        self.port = port
        self.fast = fast  # tests: no fsync, the cluster is thrown away anyway
        self.primary = primary
        self.tls = tls  # (certificate, key) PEM files: the server offers TLS with them (plain text still allowed)
        self.log = data_dir.parent / ("postgres-replica.log" if primary else "postgres.log")
        self.bindir = find_bindir()
        if self.bindir is None:
            raise RuntimeError(_INSTALL_HINT)
        self.user = "postgres" if os.geteuid() == 0 else None
        self.created = False  # whether this start made the cluster
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/flow"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while this object runs the server."""
        return self._proc.pid if self._proc else None

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return run([str(self.bindir / args[0]), *args[1:]], user=self.user)

    def _own(self, path: Path) -> None:
        """Hands `path` (and what is below it) to the server's user."""
        if self.user:
            account = pwd.getpwnam(self.user)
            for p in [path, *path.rglob("*")]:
                os.chown(p, account.pw_uid, account.pw_gid)

    def reachable(self) -> bool:
        """Whether the server's user can reach the data folder (a root-owned 0700 parent hides it)."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        return run(["test", "-x", str(self.data_dir.parent)], user=self.user).returncode == 0

    def initialise(self) -> None:
        if self.primary:
            return self._clone()
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._own(self.data_dir.parent)
        done = self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                         "--locale=C.UTF-8", *(["--no-sync"] if self.fast else []))
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}{done.stderr}")
        self.created = True

    def _clone(self) -> None:
        """A base backup of the primary, written as a standby (`-R`), unless there is one already."""
        if (self.data_dir / "PG_VERSION").exists() and not self.primary.created:
            return
        if self.data_dir.exists():  # a standby of an earlier primary, which is gone: useless now
            shutil.rmtree(self.data_dir)
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._own(self.data_dir.parent)
        self.primary.query(f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                           f"WHERE slot_name = '{REPLICATION_SLOT}' AND NOT active")
        done = self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres",
                         "-D", str(self.data_dir), "-R", "-X", "stream", "-C", "-S", REPLICATION_SLOT,
                         "--checkpoint=fast", *(["--no-sync"] if self.fast else []))
        if done.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed:\n{done.stdout}{done.stderr}")
        self.created = True

    def _write_hba(self) -> None:
        """Who may log in how, written on every start (so older clusters get it too)."""
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(HBA)
        self._own(hba)

    def start(self) -> None:
        if not port_is_free(self.port):
            raise RuntimeError(f"port {self.port} is taken; choose another PostgreSQL port")
        self.initialise()
        self._write_hba()
        (self.data_dir.parent / MARKER).write_text(f"{ROOT}\n")  # on every start: older clusters get it too
        self.log.touch()
        self._own(self.log)
        options = ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.data_dir.parent}",
                   "-c", "timezone=UTC", "-c", "max_connections=200"]
        if self.fast:
            # No synchronous_commit=off: with fsync off a commit's flush is only a write(), and WAL
            # reaches the replica only once flushed, which would put the replica ~200 ms behind.
            options += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        if self.tls:
            # PostgreSQL takes a key only if its own user owns it and no one else may read it.
            for source, name in zip(self.tls, ("server.crt", "server.key")):
                target = self.data_dir.parent / name
                shutil.copyfile(source, target)
                target.chmod(0o600)
                self._own(target)
            options += ["-c", "ssl=on", "-c", f"ssl_cert_file={self.data_dir.parent / 'server.crt'}",
                        "-c", f"ssl_key_file={self.data_dir.parent / 'server.key'}"]
        if self.primary:
            # On the command line rather than from -R's postgresql.auto.conf: the primary's port may
            # have changed since the backup.
            options += ["-c", f"primary_conninfo=host=127.0.0.1 port={self.primary.port} user=postgres "
                              f"application_name={REPLICATION_SLOT}",
                        "-c", f"primary_slot_name={REPLICATION_SLOT}", "-c", "hot_standby_feedback=on"]
        self._proc = spawn([str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port), *options],
                           log=self.log, user=self.user)
        what = "PostgreSQL replica" if self.primary else "PostgreSQL"
        wait_until(lambda: self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port)).returncode == 0,
                   60, what, self._proc, self.log)
        if self.primary:
            return  # read-only; the flow database comes from the primary
        exists = self._psql("SELECT 1 FROM pg_database WHERE datname = 'flow'")
        if exists.stdout.strip() != "1":
            self._psql("CREATE DATABASE flow", check=True)

    def _psql(self, sql: str, check: bool = False) -> subprocess.CompletedProcess:
        done = self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-tAc", sql)
        if check and done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr}")
        return done

    def query(self, sql: str, database: str = "postgres") -> str:
        """One value (or rows, one a line) from `sql`, run as the superuser; raises when it fails."""
        done = self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database, "-tAc", sql)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr}")
        return done.stdout.strip()

    def stop(self) -> None:
        if self._proc:
            stop(self._proc, signal.SIGINT, timeout=60)  # SIGINT is PostgreSQL's fast shutdown
            self._proc = None


def _serves(pid: int, data_dir: Path) -> bool:
    """Whether process `pid` is a live server of `data_dir` (a postmaster works in its data folder; a
    stale postmaster.pid's number may be another process's by now)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) == data_dir.resolve()
    except FileNotFoundError:  # gone, or a zombie
        return False
    except PermissionError:  # another user's, and no right to look: its command line names its folder (-D)
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except FileNotFoundError:
            return False
        return "-D" in args and not {str(data_dir), str(data_dir.resolve())}.isdisjoint(args)


def stop_server(data_dir: Path, timeout: float = 60) -> int | None:
    """Stops the server running on `data_dir`, if one is (a fast shutdown, SIGINT), and waits until it
    is gone; returns its process id, None when none ran."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return None
    if not _serves(pid, data_dir):
        return None
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while _serves(pid, data_dir):
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL on {data_dir} (pid {pid}) did not stop within {timeout:.0f} s")
        time.sleep(0.1)
    return pid


def _owners() -> set[int]:
    owners = {os.geteuid()}
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):  # no postgres user: no cluster ran as one
            owners.add(pwd.getpwnam("postgres").pw_uid)
    return owners


def _made_by(folder: Path, root: Path) -> bool:
    """Whether `folder` holds a cluster folder (itself, or one level down: a test run's state/postgres)
    whose marker names the clone `root`."""
    for marker in (folder / MARKER, *folder.glob(f"*/{MARKER}")):
        try:
            if marker.read_text().strip() == str(root):
                return True
        except OSError:
            pass
    return False


def leftovers(state_dirs: Iterable[Path], places: Iterable[Path] | None = None, root: Path = ROOT,
              outside: Path = OUTSIDE) -> list[Path]:
    """The folders outside the clone holding clusters it made: the outside folder of each of its state
    folders, and each flow-* folder directly in `places` (by default the temporary folders: the
    throwaway states of test and tool runs, kept or left by a killed run) whose marker names `root`.
    Only folders this user (or, for root, the postgres user) owns: never another clone's, nor a stranger's."""
    if places is None:
        places = {Path(tempfile.gettempdir()), Path("/tmp"), outside}
    found = {outside_folder(state, outside) for state in state_dirs}
    for place in places:
        found.update(f for f in place.glob("flow-*") if _made_by(f, root))
    owners = _owners()
    return sorted(f for f in found
                  if f.is_dir() and not f.is_symlink() and f.stat().st_uid in owners and not f.is_relative_to(root))


def clean(state_dirs: Iterable[Path], places: Iterable[Path] | None = None, root: Path = ROOT,
          outside: Path = OUTSIDE, dry_run: bool = False) -> list[Path]:
    """Stops the servers in `leftovers` (replicas first) and removes those folders; returns them."""
    folders = leftovers(state_dirs, places, root, outside)
    if dry_run:
        return folders
    for folder in folders:
        pids = (*folder.glob("*/postmaster.pid"), *folder.glob("*/*/postmaster.pid"))  # data, replica, postgres/data
        for data_dir in sorted({p.parent for p in pids}, key=lambda d: d.name != "replica"):
            stop_server(data_dir)
        shutil.rmtree(folder)
    return folders
