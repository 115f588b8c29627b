"""The engine's throughput against another revision's, side by side in one run.

    .venv/bin/python -m bench.compare REV [--rounds 5] [--postings 50000] [--loads uniform,hot]

checks REV out into a temporary git worktree and, on one throwaway PostgreSQL cluster, runs
bench/engine.py's engine measurement (b) of each tree in turn: each tree on a fresh database migrated
by its own sql/, with its own engine code, the same generated postings. The order alternates every
round, so the machine's noise (it is shared) falls on both. Prints every run, the medians and the
ratio this tree / REV per load, and the CPU per posting of the engine and of PostgreSQL.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOADS = {"uniform": (10_000, 1), "hot": (1, 2)}  # accounts, seed: as bench/engine.py's main


def _one_run(server: str, name: str, load: str, postings: int, postmaster_pid: Path) -> None:
    """In a child whose PYTHONPATH puts one tree first: that tree's bench.engine measures its engine."""
    import asyncio

    import bench.engine as engine

    accounts, seed = LOADS[load]
    bodies = engine.generate(postings, accounts, seed)
    url = asyncio.run(engine.fresh_database(server, name))
    postmaster = int(postmaster_pid.read_text().split()[0])
    before = engine.tree_cpu_seconds(postmaster)
    rate, _, cpu = engine.run_engine(url, bodies, 2, 2, 500)  # bench/engine.py's defaults
    asyncio.run(engine.backends_gone(url))
    server_us = (engine.tree_cpu_seconds(postmaster) - before) * 1e6 / postings
    print(json.dumps({"rate": rate, "engine_us": cpu * 1e6 / postings, "server_us": server_us,
                      "wrong": asyncio.run(engine.mismatches(url))}))


def _measure(tree: Path, server: str, name: str, load: str, postings: int, postmaster_pid: Path) -> dict:
    path = os.pathsep.join(str(p) for p in (tree, *(tree / "services" / s for s in ("rules", "kit", "engine", "ingest", "query"))))
    done = subprocess.run([sys.executable, __file__, "--child", server, name, load, str(postings), str(postmaster_pid)],
                          cwd=tree, env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the run in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the git revision to compare with (e.g. main, HEAD~3, a commit)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each tree per load (medians are printed)")
    parser.add_argument("--postings", type=int, default=50_000)
    parser.add_argument("--loads", default="uniform,hot")
    args = parser.parse_args()
    loads = args.loads.split(",")

    from tools.devstack.postgres import PostgresCluster
    from tools.devstack.processes import free_port

    work = Path(tempfile.mkdtemp(prefix="flow-compare-"))
    work.chmod(0o755)
    other = work / "other"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(other), args.rev], check=True)
    cluster = PostgresCluster(work / "data", free_port())
    cluster.start()
    trees = {"this": ROOT, args.rev: other}
    runs: dict[tuple[str, str], list[dict]] = {}
    try:
        server = cluster.url.rsplit("/", 1)[0]
        for load in loads:
            for n in range(args.rounds):
                order = list(trees.items()) if n % 2 == 0 else list(reversed(trees.items()))
                for label, tree in order:
                    name = f"compare_{load}_{n}_{'this' if tree == ROOT else 'other'}"
                    run = _measure(tree, server, name, load, args.postings, work / "data" / "postmaster.pid")
                    runs.setdefault((label, load), []).append(run)
                    print(f"{load:8} {label:>12}: {run['rate']:>8,.0f}/s  engine {run['engine_us']:5.1f} µs  "
                          f"PostgreSQL {run['server_us']:5.1f} µs per posting  wrong rows {run['wrong']}", flush=True)
    finally:
        cluster.stop()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)], check=False)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{args.postings} postings per run, {args.rounds} runs of each tree per load, alternating; medians:")
    for load in loads:
        this, then = (statistics.median(r["rate"] for r in runs[(label, load)]) for label in ("this", args.rev))
        cpu = {label: statistics.median(r["engine_us"] + r["server_us"] for r in runs[(label, load)])
               for label in ("this", args.rev)}
        print(f"  {load:8} this {this:>8,.0f}/s  {args.rev} {then:>8,.0f}/s  ratio {this / then:.3f}   "
              f"CPU per posting {cpu['this']:.1f} µs against {cpu[args.rev]:.1f} µs")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        server, name, load, postings, pid = sys.argv[2:]
        _one_run(server, name, load, int(postings), Path(pid))
    else:
        main()
