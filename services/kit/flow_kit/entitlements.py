"""Entitlements per client: which branches a client (the token's `azp`, `client_id` or Entra `appid`)
may post to and read, and the largest amount it may post at once.

FLOW_ENTITLEMENTS is a JSON object: a client id -> {"branches": ["0001", ...] or ["*"],
"maxAmount": "1000000.00" (optional, a decimal string; absent: no limit beyond the ledger's)}, plus an
optional "default" entry for the clients not listed. Unset: no entitlement checks at all. Set: an
unlisted client gets "default", or nothing (every posting and account read refused) when there is none.

    entitlements = EntitlementSettings().entitlements      # None when FLOW_ENTITLEMENTS is unset
    grant = entitlements.grant(claims.client_id) if entitlements else None
"""

import json
import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from flow_rules.limits import AMOUNT_PATTERN, BRANCH_PATTERN, anchored

__all__ = ["ALL_BRANCHES", "DEFAULT", "EntitlementSettings", "Entitlements", "Grant", "NOTHING"]

ALL_BRANCHES = "*"
DEFAULT = "default"  # the entry unlisted clients get
_BRANCH = re.compile(anchored(BRANCH_PATTERN))
_AMOUNT = re.compile(anchored(AMOUNT_PATTERN))  # as a posting's amount (checked above 0 apart)


class Grant(BaseModel):
    """What one client may do: post to and read these branches, post at most maxAmount at once."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    branches: tuple[str, ...] = Field(...)
    max_amount: Decimal | None = Field(None, alias="maxAmount")

    @field_validator("branches", mode="before")
    @classmethod
    def _branches(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple) or not all(isinstance(b, str) for b in value):
            raise ValueError('branches must be a list of branch codes, or ["*"]')
        if ALL_BRANCHES in value and len(value) != 1:
            raise ValueError('"*" (every branch) stands alone in branches')
        bad = [b for b in value if b != ALL_BRANCHES and not _BRANCH.fullmatch(b)]
        if bad:
            raise ValueError(
                f'branches must be 1 to 10 letters or digits, or "*"; refused: {", ".join(map(repr, bad))}'
            )
        return tuple(value)

    @field_validator("max_amount", mode="before")
    @classmethod
    def _max_amount(cls, value: Any) -> Any:
        if value is None:
            return None
        if type(value) is not str or not _AMOUNT.fullmatch(value) or Decimal(value) <= 0:
            raise ValueError('maxAmount must be a decimal string with 2 decimals above 0, e.g. "1000000.00"')
        return Decimal(value)

    def allows_branch(self, branch: str) -> bool:
        return self.branches == (ALL_BRANCHES,) or branch in self.branches

    def allows_amount(self, amount: Decimal) -> bool:
        return self.max_amount is None or amount <= self.max_amount


NOTHING = Grant(branches=())  # an unlisted client when there is no default entry


class Entitlements(RootModel[dict[str, Grant]]):
    """Client id -> Grant, "default" for the clients not listed."""

    model_config = ConfigDict(frozen=True)

    @field_validator("root", mode="before")
    @classmethod
    def _object(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(
                'must be a JSON object: {"<client id>": {"branches": [...], "maxAmount": "..."}, "default": {...}}'
            )
        blank = [key for key in value if not isinstance(key, str) or not key.strip()]
        if blank:
            raise ValueError("client ids must be non-empty strings")
        return value

    def grant(self, client_id: str | None) -> Grant:
        """What `client_id` may do: its own entry, else "default", else nothing."""
        if client_id is not None and client_id != DEFAULT and client_id in self.root:
            return self.root[client_id]
        return self.root.get(DEFAULT, NOTHING)


class EntitlementSettings(BaseSettings):
    """FLOW_ENTITLEMENTS (shared by ingest and query), or built directly with keyword arguments."""

    model_config = SettingsConfigDict(env_prefix="FLOW_", extra="ignore", frozen=True)

    entitlements: Annotated[Entitlements | None, NoDecode] = None

    @field_validator("entitlements", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment: read here, so bad JSON is a clear settings error
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError(f"not valid JSON: {exc}") from None
        return value
