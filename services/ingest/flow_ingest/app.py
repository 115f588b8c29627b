"""The ingest API: authenticates (later), validates and publishes postings to FlowRequest."""

import logging
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from uuid import uuid4

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import BaseModel

from flow_kit.auth import AuthSettings, Authenticator, install_auth_error_handler
from flow_kit.aws import AwsClients
from flow_kit.codes import Code
from flow_kit.errors import FlowError, error_body, install_error_handlers
from flow_kit.health import health_router
from flow_kit.logs import tracekey_var
from flow_kit.posting import PostingIn, PostingMessage, check_dateref, validation_code

from .publisher import RequestPublisher
from .settings import IngestSettings

__all__ = ["create_app"]

_log = logging.getLogger(__name__)
_POSTINGS = Counter("flow_ingest_postings_total", "Postings received by ingest", ["result", "code"])


class Accepted(BaseModel):
    id: str
    tracekey: str
    status: str = "accepted"


class ErrorOut(BaseModel):
    code: str
    message: str


def create_app(settings: IngestSettings, auth_settings: AuthSettings | None = None) -> FastAPI:
    auth = Authenticator(auth_settings or AuthSettings())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with AsyncExitStack() as stack:
            sns = await stack.enter_async_context(AwsClients(settings).client("sns"))
            app.state.publisher = RequestPublisher(sns, settings.request_topic_arn)
            yield

    app = FastAPI(title="FLOW ingest", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app, validation_code=_counted_validation_code)
    install_auth_error_handler(app)
    app.include_router(health_router(lambda: {"sns": app.state.publisher.check}))

    @app.post(
        "/v1/transactions",
        status_code=202,
        response_model=Accepted,
        responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 422: {"model": ErrorOut},
                   503: {"model": ErrorOut}},
        summary="Accept one posting for asynchronous application",
        dependencies=[Depends(auth.require("flow.write"))],
    )
    async def post_transaction(posting: PostingIn, request: Request) -> Accepted | JSONResponse:
        acceptedat = datetime.now(UTC)
        message = PostingMessage(
            **posting.model_dump(exclude={"id", "tracekey"}),
            id=posting.id or uuid4(),
            tracekey=posting.tracekey or uuid4(),
            acceptedat=acceptedat,
        )
        tracekey_var.set(str(message.tracekey))
        rule = check_dateref(message.dateref, acceptedat, settings.retroactive_days)
        if rule:
            _POSTINGS.labels("rejected", rule.value).inc()
            raise FlowError(rule, 422)
        try:
            await request.app.state.publisher.publish(message)
        except Exception:
            _log.exception("publish to FlowRequest failed", extra={"id": str(message.id)})
            _POSTINGS.labels("failed", Code.UNAVAILABLE.value).inc()
            return JSONResponse(error_body(Code.UNAVAILABLE), status_code=503)
        _POSTINGS.labels("accepted", "").inc()
        _log.info("posting accepted", extra={"id": str(message.id)})
        return Accepted(id=str(message.id), tracekey=str(message.tracekey))

    return app


def _counted_validation_code(errors: list[dict]) -> Code:
    code = validation_code(errors)
    _POSTINGS.labels("rejected", code.value).inc()
    return code
