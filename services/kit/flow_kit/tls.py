"""TLS to PostgreSQL: libpq's sslmode names, turned into what asyncpg takes.

`verify-full` is what keeps a man in the middle out: the server's certificate must chain to the CA
bundle given (for RDS the global bundle, https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem)
and name the host connected to. asyncpg then gets an `ssl.SSLContext`, which also makes TLS mandatory:
a server that does not offer it is refused, never used in plain text.
"""

import argparse
import os
import ssl
from pathlib import Path

__all__ = ["MODES", "add_arguments", "database_ssl"]

MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
VERIFYING = ("verify-ca", "verify-full")


def database_ssl(mode: str | None, rootcert: str | Path | None = None) -> ssl.SSLContext | str | None:
    """asyncpg's `ssl` argument for `mode`. verify-ca and verify-full: a context checking the server's
    certificate against `rootcert` (a PEM bundle; None: the system's CAs), and for verify-full its host
    name too. The other modes go to asyncpg as they are; None leaves asyncpg's default (PGSSLMODE, else prefer)."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"sslmode must be one of {', '.join(MODES)}")
    if rootcert and mode not in VERIFYING:
        raise ValueError("a root certificate is only used with sslmode verify-ca or verify-full")
    if mode not in VERIFYING:
        return mode
    context = ssl.create_default_context(cafile=str(rootcert) if rootcert else None)  # CERT_REQUIRED
    context.check_hostname = mode == "verify-full"
    return context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--database-sslmode and --database-sslrootcert (FLOW_DATABASE_SSLMODE, FLOW_DATABASE_SSLROOTCERT)
    of the commands that take --database-url (flow-migrate, the reconciliation)."""
    parser.add_argument(
        "--database-sslmode",
        choices=MODES,
        default=os.environ.get("FLOW_DATABASE_SSLMODE") or None,
        help="verify-full checks the server's certificate and host name (default: asyncpg's, prefer)",
    )
    parser.add_argument(
        "--database-sslrootcert",
        default=os.environ.get("FLOW_DATABASE_SSLROOTCERT") or None,
        help="PEM CA bundle the server's certificate must chain to (verify-ca, verify-full)",
    )
