"""The event catalogue as ingest sees it: read (briefly cached) to judge postings, written by admins."""

import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from flow_kit.errors import FlowError
from flow_rules.codes import Code

__all__ = ["Event", "EventCatalogue"]

_COLUMNS = "code, description, active, allowdebit, allowcredit, forced, createdat, updatedat"
# Who changes the catalogue, for the audit trail's trigger (sql/0007): settings local to the transaction.
_NAME_CALLER = text(
    "SELECT set_config('flow.caller_sub', coalesce(:sub, ''), true), "
    "set_config('flow.caller_client', coalesce(:client, ''), true)"
)


async def _name_caller(conn, caller: tuple[str, str | None] | None) -> None:
    if caller is not None:
        await conn.execute(_NAME_CALLER, {"sub": caller[0], "client": caller[1]})


@dataclass(frozen=True)
class Event:
    code: int
    description: str
    active: bool
    allowdebit: bool
    allowcredit: bool
    forced: bool
    createdat: datetime
    updatedat: datetime


class EventCatalogue:
    def __init__(self, db: AsyncEngine, cache_seconds: float) -> None:
        self._db = db
        self._cache_seconds = cache_seconds
        self._events: dict[int, Event] = {}
        self._loaded_at = float("-inf")

    async def get(self, code: int) -> Event | None:
        """The event, from a copy of the whole catalogue at most `cache_seconds` old (it is small)."""
        if time.monotonic() - self._loaded_at > self._cache_seconds:
            async with self._db.connect() as conn:
                rows = await conn.execute(text(f"SELECT {_COLUMNS} FROM flow.event"))
                self._events = {row.code: Event(**row._mapping) for row in rows}
            self._loaded_at = time.monotonic()
        return self._events.get(code)

    async def create(
        self,
        description: str,
        active: bool,
        allowdebit: bool,
        allowcredit: bool,
        code: int | None = None,
        caller: tuple[str, str | None] | None = None,
        forced: bool = False,
    ) -> Event:
        columns = {
            "description": description,
            "active": active,
            "allowdebit": allowdebit,
            "allowcredit": allowcredit,
            "forced": forced,
        }
        if code is not None:
            columns["code"] = code
        names = ", ".join(columns)
        values = ", ".join(f":{name}" for name in columns)
        try:
            async with self._db.begin() as conn:
                await _name_caller(conn, caller)
                row = (
                    await conn.execute(
                        text(f"INSERT INTO flow.event ({names}) VALUES ({values}) RETURNING {_COLUMNS}"), columns
                    )
                ).one()
                if code is not None:  # keep the serial ahead of codes chosen by hand
                    await conn.execute(
                        text("SELECT setval('flow.event_code_seq', greatest((SELECT max(code) FROM flow.event), 1))")
                    )
        except IntegrityError:
            raise FlowError(Code.EVENT_EXISTS, 409) from None
        self._loaded_at = float("-inf")
        return Event(**row._mapping)

    async def update(self, code: int, changes: dict, caller: tuple[str, str | None] | None = None) -> Event:
        async with self._db.begin() as conn:
            if changes:
                await _name_caller(conn, caller)
                assignments = ", ".join(f"{name} = :{name}" for name in changes)
                row = (
                    await conn.execute(
                        text(f"UPDATE flow.event SET {assignments} WHERE code = :code RETURNING {_COLUMNS}"),
                        {**changes, "code": code},
                    )
                ).first()
            else:
                row = (
                    await conn.execute(text(f"SELECT {_COLUMNS} FROM flow.event WHERE code = :code"), {"code": code})
                ).first()
        if row is None:
            raise FlowError(Code.EVENT_NOT_FOUND, 404)
        self._loaded_at = float("-inf")
        return Event(**row._mapping)
