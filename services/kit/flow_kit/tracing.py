"""OpenTelemetry traces keyed on the caller's tracekey.

A posting's spans, in every service, belong to the trace whose id is its tracekey (a UUID is 128 bits,
as a trace id is): searching a tracing backend for the tracekey (32 hex digits, no dashes) finds what
ingest and the engine did with it, with no context to carry through SNS and SQS. A sampler that decides
by trace id (`OTEL_TRACES_SAMPLER=traceidratio`) then keeps or drops a posting in every service alike.

Configured by the standard OTEL_* variables (exporter endpoint, headers, sampler, batch sizes). Off
unless an OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) and
OTEL_SDK_DISABLED is not true; off, the services make no spans at all.
"""

import os
from uuid import UUID

from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Link, Status, StatusCode

__all__ = ["configure_tracing", "enabled", "record_posting_span", "shutdown_tracing", "tracer"]

_provider: TracerProvider | None = None
_tracer: trace.Tracer = trace.NoOpTracer()  # the SDK's once configured (getting one per span costs a third of it)
_tracekey: UUID | None = None  # the trace the next root span belongs to; see record_posting_span
_ROOT = context.Context()  # no parent: each posting's span starts its tracekey's trace


class _TracekeyIds(RandomIdGenerator):
    """Trace ids are tracekeys while record_posting_span makes a span; random otherwise."""

    def generate_trace_id(self) -> int:
        return _tracekey.int if _tracekey is not None else super().generate_trace_id()


def configure_tracing(service: str) -> bool:
    """Sets up the SDK for `service` when the environment asks for traces; returns whether it did."""
    global _provider, _tracer
    wanted = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not wanted or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    resource = Resource.create({"service.name": f"flow-{service}", "service.namespace": "flow"})
    _provider = TracerProvider(resource=resource, id_generator=_TracekeyIds())  # sampler: OTEL_TRACES_SAMPLER
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # the exporter reads OTEL_EXPORTER_OTLP_*
    trace.set_tracer_provider(_provider)
    _tracer = _provider.get_tracer("flow")
    return True


def enabled() -> bool:
    return _provider is not None


def shutdown_tracing() -> None:
    """Exports what is still buffered (at a service's stop)."""
    if _provider is not None:
        _provider.shutdown()


def tracer() -> trace.Tracer:
    return _tracer


def record_posting_span(
    name: str,
    tracekey: UUID,
    start_ns: int,
    end_ns: int,
    attributes: dict,
    error: bool = False,
    links: list[Link] | None = None,
) -> None:
    """A finished span in `tracekey`'s trace: a root span, for a posting's work in one service."""
    global _tracekey
    _tracekey = tracekey  # read synchronously by start_span, below: no other task runs in between
    try:
        span = tracer().start_span(name, context=_ROOT, start_time=start_ns, attributes=attributes, links=links)
    finally:
        _tracekey = None
    if error:
        span.set_status(Status(StatusCode.ERROR))
    span.end(end_time=end_ns)
