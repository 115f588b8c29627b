"""Fixtures: one real local stack per test session (PostgreSQL and its read replica, LocalStack, the
three services) on free ports, so the suite runs beside a `make run` without touching it."""

import asyncio
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aioboto3
import httpx
import pytest

from tests.otlp import OtlpReceiver
from tools.devstack.processes import free_port
from tools.devstack.stack import Stack, StackConfig, new_database


@pytest.fixture(scope="session")
def otlp() -> OtlpReceiver:
    """Where the stack's services send their traces (test_tracing.py reads them)."""
    receiver = OtlpReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def stack(otlp: OtlpReceiver) -> Stack:
    state = Path(tempfile.mkdtemp(prefix="flow-test-"))
    state.chmod(0o755)  # the postgres user must reach the cluster inside it
    config = StackConfig(
        state_dir=state, pg_port=free_port(), replica_port=free_port(), localstack_port=free_port(),
        ingest_port=free_port(), query_port=free_port(), engine_port=free_port(), issuer_port=free_port(),
        fast=True, log_dir=state / "logs",
        engine_settings={"WAIT_SECONDS": "1", "POLLERS": "2", "QUEUE_STATS_SECONDS": "1"},
        # short enough that a killed engine's messages come back quickly, and poison reaches the DLQ
        # (enough deliveries that a posting held by engines SIGKILLed again and again still applies).
        messaging_parameters={"VisibilityTimeoutSeconds": "10", "MaxReceiveCount": "10"},
        service_env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"},
    )
    stack = Stack(config)
    stack.start()
    yield stack
    stack.stop()
    if os.environ.get("FLOW_KEEP_TEST_STATE"):
        print(f"test stack state kept in {state}")
    else:
        shutil.rmtree(state, ignore_errors=True)
        if stack.postgres and not stack.postgres.data_dir.is_relative_to(state):  # kept outside (see stack.py)
            shutil.rmtree(stack.postgres.data_dir.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def ingest_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.config.ingest_port}"


@pytest.fixture(scope="session")
def query_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.config.query_port}"


@pytest.fixture(scope="session")
def token(stack: Stack):
    """`token(*scopes)`: a bearer token from the stack's development issuer (every scope by default)."""
    def mint(*scopes: str) -> str:
        return stack.issuer.mint(scopes or ("flow.read", "flow.write", "flow.admin"))
    return mint


@pytest.fixture
async def http(token) -> AsyncIterator[httpx.AsyncClient]:
    """A client of FLOW's APIs, with a bearer token carrying every scope."""
    async with httpx.AsyncClient(timeout=30, headers={"authorization": f"Bearer {token()}"}) as client:
        yield client


@pytest.fixture
async def fresh_database(stack: Stack) -> str:
    """A new, migrated database with the demo events in the stack's cluster: for tests that call the
    engine's SQL directly and must not see other tests' rows."""
    return await new_database(stack.database_url.rsplit("/", 1)[0], f"t_{uuid.uuid4().hex[:12]}")


class TopicListener:
    """A queue of the test's own subscribed to an SNS topic (raw delivery), like any consumer of FLOW."""

    def __init__(self, sqs, queue_url: str) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.messages: list[dict] = []

    async def poll(self, wait_seconds: int = 1) -> list[dict]:
        response = await self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                                  WaitTimeSeconds=wait_seconds)
        got = response.get("Messages", [])
        if got:
            await self.sqs.delete_message_batch(
                QueueUrl=self.queue_url, Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(got)])
        bodies = [json.loads(m["Body"]) for m in got]
        self.messages += bodies
        return bodies

    async def collect(self, want: set[str], key: str = "tracekey", timeout: float = 120,
                      pollers: int = 4) -> dict[str, list[dict]]:
        """Polls until a message was seen for every value of `key` in `want`; returns them grouped."""
        deadline = asyncio.get_running_loop().time() + timeout
        seen: dict[str, list[dict]] = {}
        for message in self.messages:
            seen.setdefault(message.get(key), []).append(message)

        async def poller() -> None:
            while not want <= seen.keys() and asyncio.get_running_loop().time() < deadline:
                for message in await self.poll():
                    seen.setdefault(message.get(key), []).append(message)

        await asyncio.gather(*(poller() for _ in range(pollers)))
        return seen


def aws_session() -> aioboto3.Session:
    """LocalStack's: any credentials do."""
    return aioboto3.Session(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")


@pytest.fixture
async def sqs(stack: Stack):
    """An SQS client on the stack's LocalStack."""
    async with aws_session().client("sqs", endpoint_url=stack.aws_endpoint) as client:
        yield client


async def listen(stack: Stack, topic_arn: str) -> AsyncIterator[TopicListener]:
    """A TopicListener on one of `stack`'s topics, for as long as the `async for` lasts."""
    session = aws_session()
    async with session.client("sqs", endpoint_url=stack.aws_endpoint) as sqs, \
            session.client("sns", endpoint_url=stack.aws_endpoint) as sns:
        queue_url = (await sqs.create_queue(QueueName=f"test-{uuid.uuid4().hex[:12]}"))["QueueUrl"]
        arn = (await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"]))["Attributes"]["QueueArn"]
        subscription = await sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn,
                                           Attributes={"RawMessageDelivery": "true"}, ReturnSubscriptionArn=True)
        try:
            yield TopicListener(sqs, queue_url)
        finally:
            await sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
            await sqs.delete_queue(QueueUrl=queue_url)


@pytest.fixture
async def callbacks(stack: Stack) -> AsyncIterator[TopicListener]:
    async for listener in listen(stack, stack.outputs["CallbackTopicArn"]):
        yield listener


@pytest.fixture
async def requests_topic(stack: Stack) -> AsyncIterator[TopicListener]:
    async for listener in listen(stack, stack.outputs["RequestTopicArn"]):
        yield listener


_REPORT: list[str] = []


@pytest.fixture(scope="session")
def report():
    """Lines for the end of the run (timings the design asks to follow over time)."""
    return _REPORT.append


def pytest_terminal_summary(terminalreporter):
    if _REPORT:
        terminalreporter.section("FLOW figures")
        for line in _REPORT:
            terminalreporter.write_line(line)
