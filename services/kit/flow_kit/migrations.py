"""Applies the numbered plain-SQL scripts in `sql/` once each, in order.

Each applied script is recorded with its SHA-256; if a script that was already applied has been
edited since, the runner refuses to do anything, because the DDL on record would no longer be the
DDL that ran. Scripts are named `NNNN_description.sql` and each runs in its own transaction.
`schema.sql` beside them is no script: the schema they make, for people to read (tools/schema_snapshot.py).
"""

import argparse
import asyncio
import hashlib
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from . import tls

__all__ = ["MigrationError", "Script", "apply_migrations", "load_scripts", "main"]

_log = logging.getLogger(__name__)
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x464C4F57  # "FLOW": one runner at a time
SNAPSHOT = "schema.sql"


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Script:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_scripts(directory: Path) -> list[Script]:
    scripts = []
    for path in sorted(directory.glob("*.sql")):
        if path.name == SNAPSHOT:
            continue
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: script names must look like 0001_description.sql")
        scripts.append(Script(match.group(1), path.name, path.read_text()))
    versions = [s.version for s in scripts]
    if len(set(versions)) != len(versions):
        raise MigrationError("two scripts share a number")
    return scripts


def asyncpg_dsn(url: str) -> str:
    """asyncpg wants a plain libpq URL; FLOW's settings carry SQLAlchemy's `postgresql+asyncpg://`."""
    return re.sub(r"^postgresql\+asyncpg://", "postgresql://", url)


async def apply_migrations(database_url: str, directory: Path, ssl=None) -> list[str]:
    """Applies what is missing and returns the names applied; raises MigrationError on drift. `ssl`:
    asyncpg's (flow_kit.tls.database_ssl)."""
    scripts = load_scripts(directory)
    conn = await asyncpg.connect(
        asyncpg_dsn(database_url), server_settings={"timezone": "UTC"}, **({"ssl": ssl} if ssl is not None else {})
    )
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS public.flow_schema_script (
                   version   text        PRIMARY KEY,
                   name      text        NOT NULL,
                   checksum  text        NOT NULL,
                   appliedat timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {
            r["version"]: r for r in await conn.fetch("SELECT version, name, checksum FROM public.flow_schema_script")
        }
        known = {s.version for s in scripts}
        for version, row in applied.items():
            if version not in known:
                raise MigrationError(f"{row['name']} was applied but its file is gone")
        for script in scripts:
            row = applied.get(script.version)
            if row and row["checksum"] != script.checksum:
                raise MigrationError(
                    f"{script.name} was edited after it was applied (checksum differs); add a new script instead"
                )
        done = []
        for script in scripts:
            if script.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(script.sql)
                await conn.execute(
                    "INSERT INTO public.flow_schema_script (version, name, checksum) VALUES ($1, $2, $3)",
                    script.version,
                    script.name,
                    script.checksum,
                )
            _log.info("applied schema script", extra={"script": script.name})
            done.append(script.name)
        return done
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flow-migrate", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("FLOW_DATABASE_URL"),
        help="postgresql+asyncpg://user@host:port/db; better in the environment as FLOW_DATABASE_URL, "
        "since a command line (and a password in it) is visible to every process",
    )
    parser.add_argument("--sql-dir", type=Path, default=Path("sql"))
    tls.add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("set FLOW_DATABASE_URL (or pass --database-url)")
    try:
        ssl = tls.database_ssl(args.database_sslmode, args.database_sslrootcert)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    try:
        done = asyncio.run(apply_migrations(args.database_url, args.sql_dir, ssl))
    except MigrationError as exc:
        print(f"flow-migrate: {exc}", file=sys.stderr)
        return 2
    print(f"flow-migrate: {len(done)} script(s) applied" + (": " + ", ".join(done) if done else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
