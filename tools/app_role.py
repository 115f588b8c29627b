"""Creates (or re-aligns) the services' login flow_app in FLOW's RDS database from its Secrets Manager secret.

    python -m tools.app_role --region eu-west-1 --secret-id <AppSecretArn> --owner-secret-id <MasterSecretArn> \
        --ca-file global-bundle.pem

The data stack (infra/cloudformation/data.yaml) makes flow_app's secret with a generated password but
cannot reach inside the database. Run this once after the stack and the first migration: it logs in as
the schema's owner (the RDS-managed master secret), runs the grants the local stack uses
(tools/devstack/approle.py; idempotent) and sets flow_app's password to the secret's, sending only its
SCRAM verifier. Run it again whenever the two drift apart (e.g. after restoring a snapshot). From then
on the AWS rotation function keeps them in step. TLS is verified against --ca-file (RDS's certificate
bundle: https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem); nothing secret is printed.
"""

import argparse
import asyncio
import json
import ssl
import sys

import asyncpg
import boto3

from tools.devstack.approle import grant_sql, login_sql

__all__ = ["create_app_role"]


async def create_app_role(app: dict, owner: dict, tls: ssl.SSLContext | None) -> None:
    """`app`: flow_app's secret (username, password, host, port, dbname); `owner`: the owner's (username, password)."""
    conn = await asyncpg.connect(host=app["host"], port=int(app.get("port") or 5432), database=app["dbname"],
                                 user=owner["username"], password=owner["password"], ssl=tls)
    try:
        async with conn.transaction():
            await conn.execute(grant_sql(app["username"], app["dbname"], owner["username"]))
            await conn.execute(login_sql(app["password"], app["username"]))
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.app_role", description=__doc__.split("\n\n")[0])
    parser.add_argument("--region", required=True)
    parser.add_argument("--secret-id", required=True, help="flow_app's secret (the data stack's AppSecretArn)")
    parser.add_argument("--owner-secret-id", required=True, help="the master user's secret (MasterSecretArn)")
    parser.add_argument("--ca-file", required=True, help="certificate authorities the database's certificate must chain to")
    args = parser.parse_args(argv)
    secrets = boto3.client("secretsmanager", region_name=args.region)
    app, owner = (json.loads(secrets.get_secret_value(SecretId=s)["SecretString"]) for s in (args.secret_id, args.owner_secret_id))
    tls = ssl.create_default_context(cafile=args.ca_file)  # verifies the chain and the host name
    asyncio.run(create_app_role(app, owner, tls))
    print(f"{app['username']} can log in to {app['dbname']} on {app['host']} with its secret's password")
    return 0


if __name__ == "__main__":
    sys.exit(main())
