"""SQS round trips of one engine batch: prints figures, passes or fails nothing.

A batch of --batch messages takes --batch/10 ReceiveMessage calls and as many DeleteMessageBatch
calls (SQS's limit is 10 a call). On AWS each call costs a network round trip, which LocalStack on
loopback does not: here every call is delayed by a modelled round trip (--rtt-ms). Compared, on the
same queue contents: the calls one after another (how the engine worked before), and the engine's
consumer (`Consumer.gather_batch` and its deletes), which keeps several calls under way.

    .venv/bin/python -m bench.sqs [--batch 500] [--rtt-ms 10] [--repeat 5]
"""

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aioboto3

from flow_engine.consumer import Consumer
from flow_engine.settings import EngineSettings
from tools.devstack.localstack import LocalStack
from tools.devstack.processes import free_port
from tools.devstack.stack import ROOT


class DelayedSqs:
    """The real client, each call delayed by a modelled network round trip."""

    def __init__(self, sqs, rtt: float) -> None:
        self._sqs = sqs
        self._rtt = rtt

    def __getattr__(self, name: str):
        call = getattr(self._sqs, name)

        async def delayed(**arguments):
            await asyncio.sleep(self._rtt)
            return await call(**arguments)
        return delayed


async def one_after_another(sqs, queue: str, batch: int) -> tuple[list[dict], float, float]:
    started = time.perf_counter()
    messages: list[dict] = []
    while len(messages) < batch:
        more = (await sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)).get("Messages", [])
        messages += more
        if len(more) < 10:
            break
    received = time.perf_counter()
    for start in range(0, len(messages), 10):
        await sqs.delete_message_batch(QueueUrl=queue, Entries=[
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages[start:start + 10])])
    return messages, received - started, time.perf_counter() - received


async def the_consumer(sqs, queue: str, batch: int) -> tuple[list[dict], float, float]:
    settings = EngineSettings(database_url="postgresql+asyncpg://unused@127.0.0.1/unused", queue_url=queue,
                              batch_size=batch, wait_seconds=1, callback_topic_arn="arn:aws:sns:us-east-1:000000000000:unused")
    consumer = Consumer(settings, db=None, sqs_client=sqs)
    started = time.perf_counter()
    messages = await consumer.gather_batch()
    received = time.perf_counter()
    await consumer._entries("delete_message_batch", [m["ReceiptHandle"] for m in messages])
    return messages, received - started, time.perf_counter() - received


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rtt-ms", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="flow-bench-sqs-"))
    localstack = LocalStack(ROOT / ".state" / "localstack-venv", state, free_port())
    localstack.start()
    ways = {"one call after another": one_after_another, "the engine's consumer": the_consumer}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    try:
        session = aioboto3.Session(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
        async with session.client("sqs", endpoint_url=localstack.endpoint) as sqs:
            for _ in range(args.repeat):
                for name, way in ways.items():  # alternating, on a fresh queue each time
                    queue = (await sqs.create_queue(QueueName=f"bench-{uuid.uuid4().hex[:12]}"))["QueueUrl"]
                    for start in range(0, args.batch, 10):
                        await sqs.send_message_batch(QueueUrl=queue, Entries=[
                            {"Id": str(n), "MessageBody": json.dumps({"n": start + n})}
                            for n in range(min(10, args.batch - start))])
                    messages, receiving, deleting = await way(DelayedSqs(sqs, args.rtt_ms / 1000), queue, args.batch)
                    if len(messages) != args.batch:
                        raise RuntimeError(f"{name} gathered {len(messages)} of {args.batch} messages")
                    times[name].append((receiving, deleting))
                    await sqs.delete_queue(QueueUrl=queue)
    finally:
        localstack.stop()
        shutil.rmtree(state, ignore_errors=True)

    print(f"\nSQS calls of one batch of {args.batch} messages, each call delayed by {args.rtt_ms:g} ms "
          f"(LocalStack on loopback); medians of {args.repeat} runs\n")
    print(f"{'':24} {'receiving ms':>12} {'deleting ms':>12} {'total ms':>9}")
    for name, runs in times.items():
        receiving = statistics.median(r for r, _ in runs) * 1000
        deleting = statistics.median(d for _, d in runs) * 1000
        print(f"{name:24} {receiving:12,.0f} {deleting:12,.0f} {receiving + deleting:9,.0f}")


if __name__ == "__main__":
    asyncio.run(main())
