"""`flow-archive` (or `python -m flow_archive`), from the engine's image: the archive job.

    flow-archive run                 archive every month older than FLOW_ARCHIVE_RETENTION_DAYS
    flow-archive restore 2026-09     attach an archived month again, from the archive

Settings from the environment (FLOW_ARCHIVE_*: BUCKET, PREFIX, RETENTION_DAYS, DATABASE_URL, ...; see
settings.py). Exit status: 0 done (or another run holds the lock: nothing to do), 1 failed, 2 bad settings.
"""

import argparse
import asyncio
import logging
import sys
from datetime import date

from flow_kit.aws import AwsClients
from flow_kit.db import create_database
from flow_kit.logs import configure_logging
from flow_kit.serve import load_settings

from .job import ArchiveError, run
from .restore import restore_month
from .settings import ArchiveSettings

_log = logging.getLogger("flow.archive")


def _month(value: str) -> date:
    day = date.fromisoformat(value + "-01" if len(value) == 7 else value)
    if day.day != 1:
        raise argparse.ArgumentTypeError("a month: YYYY-MM")
    return day


async def _main(args: argparse.Namespace, settings: ArchiveSettings) -> int:
    db = create_database(settings, "flow-archive")
    try:
        async with AwsClients(settings).client("s3") as s3:
            if args.command == "restore":
                rows = await restore_month(db, s3, settings, args.month)
                _log.info("month restored", extra={"month": args.month.isoformat(), "postings": rows})
                return 0
            done = await run(db, s3, settings)
            if done is None:
                _log.warning("another archive run holds the lock; nothing done")
            else:
                _log.info("archive run finished", extra={"months": [r.month.isoformat() for r in done]})
            return 0
    except ArchiveError as exc:
        _log.error("archive failed: %s", exc)
        return 1
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flow-archive", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="archive every month older than the retention")
    restore = commands.add_parser("restore", help="attach an archived month again")
    restore.add_argument("month", type=_month, help="YYYY-MM")
    args = parser.parse_args(argv)
    settings = load_settings("archive", ArchiveSettings)
    configure_logging("archive", settings.log_level)
    return asyncio.run(_main(args, settings))


if __name__ == "__main__":
    sys.exit(main())
