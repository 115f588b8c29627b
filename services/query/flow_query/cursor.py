"""Opaque, signed statement cursors: the key of the last line a page showed, as base64url JSON, and an
HMAC-SHA256 of it (`<payload>.<signature>`). Only cursors this service wrote are accepted: a modified
or made-up one is R043, found before any query (it costs no database connection).

The key comes from FLOW_QUERY_CURSOR_KEY; without it a random key is drawn at start-up, and cursors
then do not survive a restart nor work on another replica (the chart takes it from a Secret)."""

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from datetime import UTC, date, datetime
from uuid import UUID

from pydantic import SecretStr

from flow_kit.errors import FlowError
from flow_rules.codes import Code

__all__ = ["START", "CursorCodec"]

# Before every line: the keyset comparison's starting point.
START = (date.min, datetime.fromisoformat("0001-01-01T00:00:00+00:00"), UUID(int=0))
_MAX_CURSOR = 200  # characters; longer ones are refused unread


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    if not text or not all(c.isalnum() or c in "-_" for c in text):  # b64decode would skip stray characters
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _invalid() -> FlowError:
    return FlowError(Code.INVALID_CURSOR, 422)


class CursorCodec:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a cursor key has at least 32 bytes")
        self.key = key

    @classmethod
    def from_setting(cls, key: SecretStr | None) -> "CursorCodec":
        """The codec of FLOW_QUERY_CURSOR_KEY; without one, of a random key (see the module's docstring)."""
        return cls(key.get_secret_value().encode() if key else secrets.token_bytes(32))

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self.key, payload.encode(), hashlib.sha256).digest())

    def sign(self, raw: bytes) -> str:
        payload = _b64(raw)
        return f"{payload}.{self._mac(payload)}"

    def encode(self, dateref: date, createdat: datetime, id: UUID) -> str:
        position = [dateref.isoformat(), createdat.isoformat(), str(id)]
        return self.sign(json.dumps(position, separators=(",", ":")).encode())

    def decode(self, cursor: str | None) -> tuple[date, datetime, UUID]:
        """The key a cursor holds, fully checked; R043 (422) for anything but a cursor this service wrote."""
        if not cursor:
            return START
        if len(cursor) > _MAX_CURSOR or cursor.count(".") != 1:
            raise _invalid()
        payload, mac = cursor.split(".")
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise _invalid()
        try:
            dateref, createdat, id = json.loads(_unb64(payload))
            key = date.fromisoformat(dateref), datetime.fromisoformat(createdat), UUID(id)
            if key[1].tzinfo is None or key[1].utcoffset() is None:
                raise ValueError("no time zone")
            key[1].astimezone(UTC)  # out of range in UTC: PostgreSQL's driver could not send it
        except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError, AttributeError):
            raise _invalid() from None
        return key
