"""Opaque statement cursors: the key of the last line a page showed, base64url-encoded JSON."""

import base64
import binascii
import json
from datetime import date, datetime
from uuid import UUID

from flow_kit.codes import Code
from flow_kit.errors import FlowError

__all__ = ["START", "decode_cursor", "encode_cursor"]

# Before every line: the keyset comparison's starting point.
START = (date.min, datetime.fromisoformat("0001-01-01T00:00:00+00:00"), UUID(int=0))


def encode_cursor(dateref: date, createdat: datetime, id: UUID) -> str:
    raw = json.dumps([dateref.isoformat(), createdat.isoformat(), str(id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[date, datetime, UUID]:
    if not cursor:
        return START
    try:
        dateref, createdat, id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        key = date.fromisoformat(dateref), datetime.fromisoformat(createdat), UUID(id)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise FlowError(Code.INVALID_CURSOR, 422) from None
    if encode_cursor(*key) != cursor:  # only the exact text this API wrote (base64 decoding skips stray characters)
        raise FlowError(Code.INVALID_CURSOR, 422)
    return key
