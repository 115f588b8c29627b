"""Child processes of the local stack: they die with it, and stop in an orderly way."""

import ctypes
import os
import pwd
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["free_port", "port_is_free", "run", "spawn", "stop", "wait_until"]

_PR_SET_PDEATHSIG = 1


def _child_setup(user: str | None, die_with_parent: bool):
    """Runs in the child before exec: drop to `user` when root (PostgreSQL refuses root), then ask
    the kernel to SIGTERM the child if the stack process dies without stopping it (after the uid
    change, which would clear that request)."""
    account = pwd.getpwnam(user) if user and os.geteuid() == 0 else None

    def setup() -> None:
        if account:
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
        if die_with_parent:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return setup


def run(args: list[str], user: str | None = None) -> subprocess.CompletedProcess:
    """Runs a short command to completion, as `user` when root."""
    return subprocess.run(args, capture_output=True, text=True, cwd="/", preexec_fn=_child_setup(user, False))


def spawn(args: list[str], *, log: Path | None = None, env: dict | None = None, user: str | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Starts `args` in its own session (so a terminal's Ctrl-C reaches only the stack, which then
    stops its children in order); output goes to `log`, or to the stack's own stdout."""
    out = open(log, "ab") if log else None
    try:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT if out else None, env=env, cwd=cwd,
            start_new_session=True, preexec_fn=_child_setup(user, True),
        )
    finally:
        if out:
            out.close()


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Asks politely with `sig`, then kills the whole process group if it is still there."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever it left behind in its session
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(5)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A free port below the kernel's ephemeral range: a port the kernel handed out could be taken
    again, as the local end of some outgoing connection, before the service binds it."""
    low = max(int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]), 20001)
    while True:
        port = random.randrange(20000, low)
        if port not in _given and port_is_free(port, host):
            _given.add(port)  # never the same twice in one process, though not yet bound
            return port


_given: set[int] = set()


def wait_until(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}" + _tail(log))
        try:
            if predicate():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s" + _tail(log))


def _tail(log: Path | None, lines: int = 20) -> str:
    if not log or not log.exists():
        return ""
    return "\n--- last lines of " + str(log) + " ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
