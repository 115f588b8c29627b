"""The services' own login role in the local stack, and its credentials in Secrets Manager.

The stack's cluster trusts only the `postgres` superuser (and replication) on loopback; the services
log in as `flow_app`, with a password drawn at every start and kept only in LocalStack's Secrets
Manager (secrets `flow/database` for the primary, `flow/database-replica` for the replica), the way
they would find an RDS-managed secret on AWS. The password is never printed, logged or put on a
command line; the server gets only its SCRAM verifier.

`flow_app` owns nothing. It may use schema `flow`, read and write its tables (COPY included: that
is INSERT), use its sequences and call its functions; default privileges extend that to objects
the migrations create later. Partitions of flow.transaction are created by
flow.maintain_transaction_partitions(), which runs with its owner's rights (sql/0004), so flow_app
needs no CREATE on the schema and no ownership of flow.transaction.
"""

import base64
import hashlib
import hmac
import json
import secrets

import boto3

__all__ = ["APP_ROLE", "PRIMARY_SECRET", "REPLICA_SECRET", "grant_sql", "login_sql", "new_password", "put_secret",
           "scram_verifier"]

APP_ROLE = "flow_app"
PRIMARY_SECRET = "flow/database"
REPLICA_SECRET = "flow/database-replica"


def new_password() -> str:
    return secrets.token_urlsafe(32)


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802/7677); `ALTER ROLE ... PASSWORD`
    takes it as is, so the password itself never reaches the server or its logs."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def grant_sql(role: str = APP_ROLE, database: str = "flow", owner: str = "postgres") -> str:
    """Creates `role` (no login yet) if missing and grants it what the services need in `database`.
    Idempotent; run by `owner`, the role that applies the migrations."""
    return f"""
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        CREATE ROLE {role} NOLOGIN;
    END IF;
END $$;
GRANT CONNECT ON DATABASE {database} TO {role};
GRANT USAGE ON SCHEMA flow TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA flow TO {role};
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA flow TO {role};  -- UPDATE: setval when an admin picks an event code
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA flow TO {role};
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA flow GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role};
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA flow GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {role};
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA flow GRANT EXECUTE ON FUNCTIONS TO {role};
"""


def login_sql(password: str, role: str = APP_ROLE) -> str:
    return f"ALTER ROLE {role} WITH LOGIN PASSWORD '{scram_verifier(password)}'"


def put_secret(endpoint: str, name: str, value: dict) -> None:
    """Creates or updates a Secrets Manager secret (here: LocalStack's)."""
    client = boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    try:
        client.create_secret(Name=name, SecretString=json.dumps(value))
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=name, SecretString=json.dumps(value))
