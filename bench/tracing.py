"""What tracing costs: prints CPU per traced posting, passes or fails nothing.

The engine's spans for batches of 500 postings (flow_kit.tracing, as the consumer makes them), exported
over OTLP/HTTP to a receiver in another process (tests/otlp.py), so this process's CPU is the SDK's
making, batching and encoding of spans. Compared side by side, medians of --repeat runs: no tracing
configured, every posting traced, and 1% of the tracekeys sampled (OTEL_TRACES_SAMPLER=traceidratio).

    .venv/bin/python -m bench.tracing [--postings 20000] [--repeat 3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid

from opentelemetry.trace import Link

from flow_kit import tracing

RECEIVER = ("import sys, time; from tests.otlp import OtlpReceiver; r = OtlpReceiver(); "
            "print(r.endpoint, flush=True); time.sleep(3600)")


def spans_for(keys: list[uuid.UUID]) -> None:
    """The engine's spans for these postings, in batches of 500 (see flow_engine.consumer._trace)."""
    for start in range(0, len(keys), 500):
        now = time.time_ns()
        if tracing.enabled():
            batch = tracing.tracer().start_span("flow.engine.batch", start_time=now)
            batch.end()
            link = [Link(batch.get_span_context())]
            for key in keys[start:start + 500]:
                tracing.record_posting_span("flow.engine.apply", key, now, now + 1000, {
                    "flow.tracekey": str(key), "flow.posting.id": str(key), "flow.status": "applied",
                    "flow.code": "R000", "flow.batch.postings": 500}, links=link)


def cpu_per_posting(keys: list[uuid.UUID]) -> float:
    started = time.process_time()
    spans_for(keys)
    if tracing.enabled():
        tracing._provider.force_flush()  # the export is part of the cost
    return (time.process_time() - started) / len(keys) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postings", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    try:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.stdout.readline().strip()
        os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", str(args.postings + 1000))  # keep every span
        keys = [uuid.uuid4() for _ in range(args.postings)]
        off = [cpu_per_posting(keys) for _ in range(args.repeat)]
        tracing.configure_tracing("bench")
        on = [cpu_per_posting(keys) for _ in range(args.repeat)]
        tracing.shutdown_tracing()
        os.environ.update(OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="0.01")
        tracing.configure_tracing("bench")  # the sampler is read when the provider is made
        sampled = [cpu_per_posting(keys) for _ in range(args.repeat)]
        tracing.shutdown_tracing()
    finally:
        receiver.kill()
    print(f"\nCPU per posting, {args.postings} postings in batches of 500, medians of {args.repeat} runs:")
    print(f"  tracing off: {statistics.median(off):6.2f} µs")
    print(f"  every posting traced (span made, batched, encoded, sent over OTLP/HTTP): {statistics.median(on):6.1f} µs")
    print(f"  1% of tracekeys sampled (traceidratio 0.01): {statistics.median(sampled):6.1f} µs")


if __name__ == "__main__":
    main()
