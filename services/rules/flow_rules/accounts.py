"""What the engine and the admin API share about accounts: the lock that orders every change to one
account (a batch moving its balances, an admin changing its registry row) and the registry's states."""

import hashlib

__all__ = ["ACTIVE", "BLOCKED", "CLOSED", "account_lock_key"]

ACTIVE, BLOCKED, CLOSED = "active", "blocked", "closed"


def account_lock_key(branch: str, account: str) -> int:
    """A stable signed 64-bit advisory lock key per account, the same in every process."""
    digest = hashlib.blake2b(f"{branch}/{account}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
