"""The account registry and the admin API's bodies (its routes: flow_ingest.endpoints.accounts): open an
account, change its limit or holder, block and unblock it, close it. Every change takes the account's
lock, the one the engine takes before it judges or moves the account (flow_rules.accounts), so no batch
interleaves with it."""

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from flow_kit.errors import FlowError
from flow_rules.accounts import ACTIVE, BLOCKED, CLOSED, account_lock_key
from flow_rules.codes import Code
from flow_rules.limits import MAX_TEXT
from flow_rules.posting import Account, Branch, Text

__all__ = ["AccountIn", "AccountOut", "AccountPatch", "AccountRegistry", "BlockIn", "CloseIn"]

# A limit: like an amount (a string, 2 decimals, no sign) but 0 is allowed and 15 whole digits.
Limit = Annotated[str, StringConstraints(strict=True, pattern=r"^(0|[1-9][0-9]{0,14})\.[0-9]{2}$")]
Reason = Annotated[Text, StringConstraints(min_length=1, max_length=MAX_TEXT)]
Holder = Annotated[Text, StringConstraints(max_length=MAX_TEXT)]


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    branch: Branch
    account: Account
    limit: Limit | None = Field("0.00", description="how far below zero the balance may go; null: no limit")
    holder: Holder | None = Field(None, description="a reference to the account's holder")


class AccountPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    limit: Limit | None = Field(None, description="the new limit; null leaves it (see nolimit)")
    nolimit: bool = Field(False, description="true: remove the limit (then give no limit)")
    holder: Holder | None = None


class BlockIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    debits: bool = True
    credits: bool = True
    reason: Reason


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: Reason


class AccountOut(BaseModel):
    branch: str
    account: str
    status: str = Field(description="active, blocked or closed")
    blockdebit: bool
    blockcredit: bool
    limit: str | None = Field(description="overdraft limit; null: no limit")
    holder: str | None
    reason: str | None = Field(description="why the status last changed")
    createdat: datetime
    updatedat: datetime
    tracekey: str
    updatetracekey: str


_COLUMNS = (
    "branch, account, status, blockdebit, blockcredit, overdraftlimit, holder, reason, createdat, updatedat, "
    "tracekey, updatetracekey"
)
# The account's lock, and for the audit trail's trigger (sql/0012) who makes which change: settings local
# to the transaction, so the trail names them whatever the change writes.
_LOCK = text(
    "SELECT pg_advisory_xact_lock(:key), set_config('flow.caller_sub', coalesce(:sub, ''), true), "
    "set_config('flow.caller_client', coalesce(:client, ''), true), set_config('flow.account_change', :change, true)"
)
_ROW = text(f"SELECT {_COLUMNS} FROM flow.account WHERE branch = :branch AND account = :account")
_BALANCE = text("""SELECT accumulatedcredit - accumulateddebit AS balance FROM flow.balance
                   WHERE branch = :branch AND account = :account ORDER BY dateref DESC LIMIT 1""")
_INSERT = text(f"""INSERT INTO flow.account (branch, account, overdraftlimit, holder, tracekey, updatetracekey,
                                            callersub, callerclient)
                   VALUES (:branch, :account, :limit, :holder, :tracekey, :tracekey, :sub, :client)
                   RETURNING {_COLUMNS}""")
_UPDATE = text(f"""UPDATE flow.account
                   SET status = :status, blockdebit = :blockdebit, blockcredit = :blockcredit,
                       overdraftlimit = :limit, holder = :holder, reason = :reason, updatedat = now(),
                       updatetracekey = :tracekey, callersub = :sub, callerclient = :client
                   WHERE branch = :branch AND account = :account
                   RETURNING {_COLUMNS}""")


def _out(row) -> AccountOut:
    values = dict(row._mapping)
    limit = values.pop("overdraftlimit")
    return AccountOut(
        **{
            **values,
            "limit": None if limit is None else f"{limit:.2f}",
            "tracekey": str(values["tracekey"]),
            "updatetracekey": str(values["updatetracekey"]),
        }
    )


class AccountRegistry:
    def __init__(self, db: AsyncEngine) -> None:
        self._db = db

    @staticmethod
    async def _lock(conn: AsyncConnection, branch: str, account: str, caller, change: str) -> None:
        """Takes the account's lock and names the caller and the change for the audit trail."""
        sub, client = caller or (None, None)
        await conn.execute(
            _LOCK, {"key": account_lock_key(branch, account), "sub": sub, "client": client, "change": change}
        )

    async def open(
        self,
        branch: str,
        account: str,
        limit: Decimal | None = Decimal("0.00"),
        holder: str | None = None,
        caller: tuple[str, str | None] | None = None,
    ) -> AccountOut:
        """Registers the account (one opened by its first posting keeps its balance); 409 R081 if it is."""
        async with self._db.begin() as conn:
            await self._lock(conn, branch, account, caller, "open")
            if (await conn.execute(_ROW, {"branch": branch, "account": account})).first() is not None:
                raise FlowError(Code.ACCOUNT_EXISTS, 409)
            return _out(await self._insert(conn, branch, account, limit, holder, caller))

    async def change(self, branch: str, account: str, caller=None, **changes) -> AccountOut:
        """Changes `limit` (None: no limit) and/or `holder`."""
        return await self._change("change", branch, account, caller, lambda row: changes)

    async def block(
        self, branch: str, account: str, debits: bool, credits: bool, reason: str, caller=None
    ) -> AccountOut:
        def blocked(row):
            flags = {"blockdebit": row["blockdebit"] or debits, "blockcredit": row["blockcredit"] or credits}
            return {**flags, "status": BLOCKED if any(flags.values()) else ACTIVE, "reason": reason}

        return await self._change("block", branch, account, caller, blocked)

    async def unblock(
        self, branch: str, account: str, debits: bool, credits: bool, reason: str, caller=None
    ) -> AccountOut:
        def unblocked(row):
            flags = {"blockdebit": row["blockdebit"] and not debits, "blockcredit": row["blockcredit"] and not credits}
            return {**flags, "status": BLOCKED if any(flags.values()) else ACTIVE, "reason": reason}

        return await self._change("unblock", branch, account, caller, unblocked)

    async def close(self, branch: str, account: str, reason: str, caller=None) -> AccountOut:
        """Closes the account at a zero balance (409 R083 otherwise); a closed account stays closed."""

        async def at_zero(conn) -> None:
            balance = (await conn.execute(_BALANCE, {"branch": branch, "account": account})).scalar()
            if balance not in (None, 0):
                raise FlowError(Code.ACCOUNT_NOT_AT_ZERO, 409)

        return await self._change(
            "close",
            branch,
            account,
            caller,
            lambda row: {"status": CLOSED, "blockdebit": False, "blockcredit": False, "reason": reason},
            check=at_zero,
        )

    async def _change(self, change: str, branch, account, caller, changes_of, check=None) -> AccountOut:
        async with self._db.begin() as conn:
            await self._lock(conn, branch, account, caller, change)
            row = (await conn.execute(_ROW, {"branch": branch, "account": account})).first()
            if row is None:  # an account opened by its first posting is registered now, as it was: no limit
                if (await conn.execute(_BALANCE, {"branch": branch, "account": account})).first() is None:
                    raise FlowError(Code.ACCOUNT_NOT_FOUND, 404)
                row = await self._insert(conn, branch, account, None, None, caller)
            current = dict(row._mapping)
            if current["status"] == CLOSED:
                raise FlowError(Code.ACCOUNT_IS_CLOSED, 409)
            if check is not None:
                await check(conn)
            new = {
                "status": current["status"],
                "blockdebit": current["blockdebit"],
                "blockcredit": current["blockcredit"],
                "limit": current["overdraftlimit"],
                "holder": current["holder"],
                "reason": current["reason"],
                **changes_of(current),
            }
            sub, client = caller or (None, None)
            updated = await conn.execute(
                _UPDATE,
                {**new, "branch": branch, "account": account, "tracekey": uuid.uuid4(), "sub": sub, "client": client},
            )
            return _out(updated.one())

    @staticmethod
    async def _insert(conn: AsyncConnection, branch, account, limit, holder, caller):
        sub, client = caller or (None, None)
        return (
            await conn.execute(
                _INSERT,
                {
                    "branch": branch,
                    "account": account,
                    "limit": limit,
                    "holder": holder,
                    "tracekey": uuid.uuid4(),
                    "sub": sub,
                    "client": client,
                },
            )
        ).one()
