"""What one batch request costs ingest in memory, measured (tracemalloc, in-process over httpx's ASGI
transport; no database or SNS: the cost measured is reading, parsing and validating the body).

    .venv/bin/python -m bench.ingest_memory [--body-bytes 8388608]

Prints the peak Python allocation for: an unauthenticated 8 MiB batch (refused on its headers), the
largest legitimate batch (1000 postings with 4 KiB details), a body of the limit's size filled with
such postings, and the same size filled with the cheapest-to-send, costliest-to-parse items (`{}`).
"""

import argparse
import asyncio
import json
import tracemalloc
from datetime import UTC, datetime

import httpx

from flow_ingest.app import create_app
from flow_ingest.settings import IngestSettings
from flow_kit.auth import AuthSettings
from tools.devstack.issuer import DevIssuer


def posting(n: int, details_bytes: int) -> dict:
    note = "x" * (details_bytes - len('{"note": ""}'))
    return {"id": "00000000-0000-4000-8000-%012d" % n, "tracekey": "00000000-0000-4000-8000-%012d" % n,
            "branch": "0001", "account": f"{n:09d}", "amount": "1234567890123.45", "debitcredit": "C",
            "eventcode": 2_000_000_000, "description": "d" * 200, "dateref": datetime.now(UTC).date().isoformat(),
            "details": {"note": note}}


def filled(size: int, item: bytes) -> bytes:
    count = (size - 20) // (len(item) + 1)
    return b'{"items": [' + b",".join([item] * count) + b"]}"


async def peak(app, body: bytes, headers: dict) -> tuple[int, int]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://flow", timeout=120) as c:
        await c.post("/v1/transactions/batch", content=b"{}", headers=headers)  # warm up
        tracemalloc.start()
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        response = await c.post("/v1/transactions/batch", content=body, headers=headers)
        result = tracemalloc.get_traced_memory()[1] - before
        tracemalloc.stop()
    return response.status_code, result


async def main(body_bytes: int) -> None:
    with DevIssuer() as issuer:
        settings = IngestSettings(request_topic_arn="arn:aws:sns:us-east-1:000000000000:FlowRequest",
                                  database_url="postgresql+asyncpg://flow@127.0.0.1:1/flow",
                                  max_batch_body_bytes=max(body_bytes, 8 * 1024 * 1024))
        app = create_app(settings, AuthSettings(enabled=True, issuer=issuer.issuer, audience=[issuer.audience],
                                                discovery_url=issuer.discovery_url))
        json_type = {"content-type": "application/json"}
        authed = {**json_type, "authorization": f"Bearer {issuer.mint(['flow.write'])}"}
        largest = json.dumps({"items": [posting(n, 4096) for n in range(1000)]}).encode()
        cases = [
            ("unauthenticated, 8 MiB of postings", filled(8 * 1024 * 1024, json.dumps(posting(1, 4096)).encode()),
             json_type),
            ("largest legitimate batch (1000 x 4 KiB details)", largest, authed),
            (f"{body_bytes} bytes of 4 KiB-details postings", filled(body_bytes, json.dumps(posting(1, 4096)).encode()),
             authed),
            (f"{body_bytes} bytes of {{}} items", filled(body_bytes, b"{}"), authed),
            (f"{body_bytes} bytes of small postings", filled(body_bytes, json.dumps(posting(1, 12)).encode()), authed),
        ]
        for name, body, headers in cases:
            status, used = await peak(app, body, headers)
            print(f"{name:55} body {len(body) / 2**20:6.2f} MiB  status {status}  peak {used / 2**20:8.1f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--body-bytes", type=int, default=8 * 1024 * 1024)
    asyncio.run(main(parser.parse_args().body_bytes))
