"""The whole local stack: PostgreSQL (a primary and a streaming read replica), LocalStack with the
messaging stack deployed, the schema, a demo event catalogue, the services' login role with its
credentials in Secrets Manager, and the three services. `make run` and the test suite both use it."""

import asyncio
import logging
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import boto3

from flow_kit.migrations import apply_migrations

from .approle import APP_ROLE, PRIMARY_SECRET, REPLICA_SECRET, grant_sql, login_sql, new_password, put_secret
from .images import IMAGE_TAG, ChartPods, ImageRunner, merge_values
from .issuer import DevIssuer
from .localstack import LocalStack
from .messaging import deploy_messaging, local_aws_env
from .postgres import PostgresCluster, outside_folder
from .processes import free_port, spawn, stop, wait_until

__all__ = ["AUDIENCE", "ROOT", "Stack", "StackConfig", "new_database"]

ROOT = Path(__file__).resolve().parents[2]
AUDIENCE = "api://flow"
_log = logging.getLogger("devstack")

DEMO_EVENTS = """
INSERT INTO flow.event (code, description, active, allowdebit, allowcredit, forced) VALUES
    (1, 'Transfer', true, true, true, false),
    (2, 'Fee', true, true, false, false),
    (3, 'Deposit', true, false, true, false),
    (5, 'Court order', true, true, false, true)
ON CONFLICT (code) DO NOTHING;
SELECT setval('flow.event_code_seq', (SELECT max(code) FROM flow.event));
"""

# A few registered accounts with overdraft limits for the demo (accounts no test posts to); every
# other account opens on its first posting, with no limit.
DEMO_ACCOUNTS = """
INSERT INTO flow.account (branch, account, overdraftlimit, holder, tracekey, updatetracekey) VALUES
    ('0001', '900000001', 0.00, 'demo: no overdraft', gen_random_uuid(), gen_random_uuid()),
    ('0001', '900000002', 500.00, 'demo: 500.00 overdraft', gen_random_uuid(), gen_random_uuid()),
    ('0001', '900000003', 10000.00, 'demo: 10,000.00 overdraft', gen_random_uuid(), gen_random_uuid())
ON CONFLICT (branch, account) DO NOTHING;
"""


async def new_database(server: str, name: str) -> str:
    """Creates database `name` (dropping one of that name) on `server` (a URL without the database),
    migrated and with the demo events; returns its URL. For tests and benchmarks that need a ledger
    of their own."""
    import asyncpg

    from flow_kit.migrations import asyncpg_dsn

    admin = await asyncpg.connect(asyncpg_dsn(f"{server}/postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = f"{server}/{name}"
    await apply_migrations(url, ROOT / "sql")
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(DEMO_EVENTS)
    finally:
        await conn.close()
    return url


@dataclass
class StackConfig:
    state_dir: Path
    pg_port: int = 5442
    replica_port: int = 5443  # the primary's streaming hot standby, which query reads from
    localstack_port: int = 4566
    ingest_port: int = 8001
    query_port: int = 8002
    engine_port: int = 8003
    issuer_port: int = 8004
    database_url: str | None = None  # use this server instead of starting a cluster (no replica, no secrets)
    fast: bool = False  # throwaway cluster for tests: no fsync
    log_dir: Path | None = None  # services' logs go here; None: to this process's stdout
    engine_settings: dict[str, str] = field(default_factory=dict)
    retroactive_days: int = 7
    messaging_parameters: dict[str, str] = field(default_factory=dict)  # infra/cloudformation/messaging.yaml
    service_env: dict[str, str] = field(default_factory=dict)  # more environment for every service (e.g. OTEL_*)
    # Run the services and the migrations from the built images (tools/images.sh), configured by the
    # chart (tools/devstack/images.py) with chart_values on top of the stack's own; needs the replica.
    images: bool = False
    chart_values: dict = field(default_factory=dict)


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.postgres: PostgresCluster | None = None
        self.replica: PostgresCluster | None = None
        self.localstack: LocalStack | None = None
        self.issuer: DevIssuer | None = None
        self.outputs: dict[str, str] = {}
        self.services: dict[str, subprocess.Popen] = {}
        self.engines: list[subprocess.Popen] = []
        self.images: ImageRunner | None = None
        self.health_ports: dict[str, int] = {}  # images mode: the chart's health and metrics ports

    # -- infrastructure -------------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        return self.config.database_url or self.postgres.url

    @property
    def replica_url(self) -> str | None:
        """The read replica, as the superuser; None when the stack uses an external server."""
        return self.replica.url if self.replica else None

    @property
    def aws_endpoint(self) -> str:
        return self.localstack.endpoint

    def start_infrastructure(self) -> None:
        state = self.config.state_dir
        # The development OIDC issuer, in this process: it signs the bearer tokens ingest and query check.
        self.issuer = DevIssuer(self.config.issuer_port, audience=AUDIENCE).start()
        if not self.config.database_url:
            self.postgres = PostgresCluster(state / "postgres" / "data", self.config.pg_port, fast=self.config.fast)
            if not self.postgres.reachable():
                # A root-owned private parent (e.g. a clone inside a 0700 temp folder) hides the
                # state folder from the postgres user; keep the cluster where it can reach it.
                self.postgres = PostgresCluster(outside_folder(state) / "data", self.config.pg_port,
                                                fast=self.config.fast)
                _log.warning("state folder not reachable by the postgres user; cluster kept in %s", self.postgres.data_dir)
            self.postgres.start()
            self.replica = PostgresCluster(self.postgres.data_dir.parent / "replica", self.config.replica_port,
                                           fast=self.config.fast, primary=self.postgres)
            self.replica.start()
        self.localstack = LocalStack(ROOT / ".state" / "localstack-venv", state / "localstack", self.config.localstack_port)
        self.localstack.start()
        self.outputs = deploy_messaging(self.aws_endpoint, ROOT / "infra" / "cloudformation" / "messaging.yaml",
                                        self.config.messaging_parameters)
        # The data lake's bucket, from the template AWS gets (its outputs join the messaging stack's).
        self.outputs |= deploy_messaging(self.aws_endpoint, ROOT / "infra" / "cloudformation" / "archive.yaml",
                                         {"RetentionDays": "1"}, stack_name="flow-archive")
        if self.config.images:
            # The chart serves health and metrics on a port of their own; on the host's network, free ones.
            self.health_ports = {service: free_port() for service in ("ingest", "engine", "query")}
            if not self.replica:
                raise RuntimeError("the services run from images only on the stack's own PostgreSQL")
            # The Kubernetes Secret the migration Job reads: the primary's URL, as the schema's owner.
            pods = ChartPods(self._chart_values(), {"flow-database": {"migration-url": self.database_url}})
            self.images = ImageRunner(pods, local_aws_env(self.aws_endpoint))
        asyncio.run(self._prepare_database())
        if self.replica:
            self.wait_for_replica()

    async def _prepare_database(self) -> None:
        import asyncpg

        from flow_kit.migrations import asyncpg_dsn

        if self.images:
            _log.info("%s", self.images.migrate("flow-migrate").strip())
        else:
            await apply_migrations(self.database_url, ROOT / "sql")
        conn = await asyncpg.connect(asyncpg_dsn(self.database_url))
        try:
            await conn.execute(DEMO_EVENTS)
            await conn.execute(DEMO_ACCOUNTS)
            if self.replica:
                # The services' login role: a fresh password every start, kept only in Secrets Manager.
                password = new_password()
                await conn.execute(grant_sql(APP_ROLE))
                await conn.execute(login_sql(password, APP_ROLE))
                for name, port in ((PRIMARY_SECRET, self.postgres.port), (REPLICA_SECRET, self.replica.port)):
                    put_secret(self.aws_endpoint, name, {"engine": "postgres", "username": APP_ROLE,
                                                         "password": password, "host": "127.0.0.1",
                                                         "port": port, "dbname": "flow"})
        finally:
            await conn.close()

    def wait_for_replica(self, timeout: float = 30) -> None:
        """Waits until the replica has replayed everything the primary has written so far."""
        lsn = self.postgres.query("SELECT pg_current_wal_lsn()")
        wait_until(lambda: self.replica.query(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn") == "t",
                   timeout, "PostgreSQL replica catching up", log=self.replica.log)

    def _database_env(self, service: str) -> dict[str, str]:
        """Where a service's database is: query reads from the replica; every service logs in as
        flow_app with the credentials of a Secrets Manager secret, unless the stack runs on an
        external server (then the URL is passed as given)."""
        if not self.replica:
            return {"DATABASE_URL": self.database_url}
        replica = service == "query"
        port = self.replica.port if replica else self.postgres.port
        return {"DATABASE_URL": f"postgresql+asyncpg://127.0.0.1:{port}/flow",
                "DATABASE_SECRET_ID": REPLICA_SECRET if replica else PRIMARY_SECRET}

    def _chart_values(self) -> dict:
        """Chart values for this stack (the images mode): what a platform team would set for theirs."""
        c = self.config

        def image(service: str) -> dict:
            return {"repository": f"localhost/flow-{service}", "tag": IMAGE_TAG, "pullPolicy": "Never"}

        return merge_values({
            "ingest": {"image": image("ingest"), "port": c.ingest_port, "healthPort": self.health_ports["ingest"],
                       "retroactiveDays": c.retroactive_days},
            "engine": {"image": image("engine"), "port": c.engine_port, "healthPort": self.health_ports["engine"],
                       "retroactiveDays": c.retroactive_days},
            "query": {"image": image("query"), "port": c.query_port, "healthPort": self.health_ports["query"]},
            "database": {"mode": "secretsManager", "secretName": "flow-database",
                         "primaryUrl": f"postgresql+asyncpg://127.0.0.1:{self.postgres.port}/flow",
                         "replicaUrl": f"postgresql+asyncpg://127.0.0.1:{self.replica.port}/flow",
                         "primarySecretId": PRIMARY_SECRET, "replicaSecretId": REPLICA_SECRET,
                         "tls": {"mode": "disable"}},  # the stack's own PostgreSQL has no certificate
            "messaging": {"requestTopicArn": self.outputs["RequestTopicArn"],
                          "callbackTopicArn": self.outputs["CallbackTopicArn"], "queueUrl": self.outputs["QueueUrl"]},
            "aws": {"region": "us-east-1", "endpointUrl": self.aws_endpoint},
            "auth": {"enabled": True, "issuer": self.issuer.issuer, "audience": AUDIENCE},
            "docs": {"enabled": True},  # local development: /docs as make run prints it
        }, c.chart_values)

    # -- services -------------------------------------------------------------------------------
    def service_env(self, service: str) -> dict[str, str]:
        c = self.config
        env = {**os.environ, **local_aws_env(self.aws_endpoint), **c.service_env}
        env.update({"FLOW_AUTH_ISSUER": self.issuer.issuer, "FLOW_AUTH_AUDIENCE": AUDIENCE})
        common = {"AWS_ENDPOINT_URL": self.aws_endpoint, "AWS_REGION": "us-east-1"}
        specific = {
            "ingest": {"HTTP_PORT": c.ingest_port, "REQUEST_TOPIC_ARN": self.outputs["RequestTopicArn"],
                       "RETROACTIVE_DAYS": c.retroactive_days},
            "engine": {"HTTP_PORT": c.engine_port,
                       "QUEUE_URL": self.outputs["QueueUrl"], "CALLBACK_TOPIC_ARN": self.outputs["CallbackTopicArn"],
                       "RETROACTIVE_DAYS": c.retroactive_days, **c.engine_settings},
            "query": {"HTTP_PORT": c.query_port, "ARCHIVE_BUCKET": self.outputs["ArchiveBucketName"],
                      "ARCHIVE_CACHE_DIR": str(c.state_dir / "query-archive-cache")},
        }[service]
        specific = {**self._database_env(service), **specific}
        prefix = f"FLOW_{service.upper()}_"
        for key, value in {**common, **specific}.items():
            env[prefix + key] = str(value)
        return env

    def archive_env(self, **settings) -> dict[str, str]:
        """The environment of `flow-archive` (the archive job) on this stack: the primary, as flow_app,
        the archive bucket; `settings` are more FLOW_ARCHIVE_* ones (retention_days=40)."""
        values = {**self._database_env("engine"), "AWS_ENDPOINT_URL": self.aws_endpoint, "AWS_REGION": "us-east-1",
                  "BUCKET": self.outputs["ArchiveBucketName"], **{k.upper(): v for k, v in settings.items()}}
        return {**os.environ, **local_aws_env(self.aws_endpoint), **{f"FLOW_ARCHIVE_{k}": str(v) for k, v in values.items()}}

    def _spawn_service(self, service: str, port: int, name: str) -> subprocess.Popen:
        log = self.config.log_dir / f"{name}.log" if self.config.log_dir else None
        if self.images:
            if port != getattr(self.config, f"{service}_port"):
                raise ValueError("from images, a service listens on the port the chart gives it")
            proc = self.images.spawn(service, f"flow-{name}", log)
            port = self.health_ports[service]  # where the chart's pods answer /readyz
        else:
            env = self.service_env(service)
            env[f"FLOW_{service.upper()}_HTTP_PORT"] = str(port)
            proc = spawn([sys.executable, "-m", f"flow_{service}"], log=log, env=env, cwd=ROOT)
        wait_until(lambda: _http_ok(f"http://127.0.0.1:{port}/readyz"), 60, f"{name}", proc, log)
        return proc

    def start_services(self) -> None:
        if self.config.log_dir:
            self.config.log_dir.mkdir(parents=True, exist_ok=True)
        self.services["query"] = self._spawn_service("query", self.config.query_port, "query")
        self.start_engine(self.config.engine_port)
        self.services["ingest"] = self._spawn_service("ingest", self.config.ingest_port, "ingest")

    def start_engine(self, port: int) -> subprocess.Popen:
        proc = self._spawn_service("engine", port, f"engine-{port}")
        self.engines.append(proc)
        return proc

    def start(self) -> None:
        try:
            self.start_infrastructure()
            self.start_services()
        except BaseException:
            self.stop()
            raise

    def pids(self) -> dict[str, list[int]]:
        """The root processes of each running part of the stack, by part (benchmarks read their CPU)."""
        parts = {"PostgreSQL": [self.postgres, self.replica], "LocalStack": [self.localstack]}
        found = {name: [c.pid for c in components if c and c.pid] for name, components in parts.items()}
        found.update({name: [proc.pid] for name, proc in self.services.items()})
        found["engine"] = [proc.pid for proc in self.engines]
        return found

    # -- stopping -------------------------------------------------------------------------------
    def queue_depth(self) -> int:
        sqs = boto3.client("sqs", endpoint_url=self.aws_endpoint, region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
        attributes = sqs.get_queue_attributes(
            QueueUrl=self.outputs["QueueUrl"],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def drain(self, timeout: float = 30) -> None:
        """Waits for the engines to empty the queue, so stopping LocalStack loses no accepted posting."""
        if not self.outputs or not any(p.poll() is None for p in self.engines):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.queue_depth() == 0:
                    return
            except Exception:
                return
            time.sleep(0.5)
        _log.warning("queue not empty after %.0f s; undelivered postings are lost with LocalStack", timeout)

    def stop(self) -> None:
        """Stops everything it started, in dependency order: ingest first, engines after draining."""
        if "ingest" in self.services:
            stop(self.services.pop("ingest"))
        self.drain()
        for proc in self.engines:
            stop(proc)
        self.engines.clear()
        for name in list(self.services):
            stop(self.services.pop(name))
        if self.images:
            self.images.remove_all()
        if self.localstack:
            self.localstack.stop()
        if self.replica:
            self.replica.stop()
        if self.postgres:
            self.postgres.stop()
        if self.issuer:
            self.issuer.stop()


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200
