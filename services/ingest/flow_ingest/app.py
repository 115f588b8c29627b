"""The ingest API: checks the caller's token, validates postings and publishes them to FlowRequest;
admins manage the event catalogue and the account registry here too."""

from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated

from fastapi import Body, Depends, FastAPI, Path, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from flow_kit.access import AccessLog
from flow_kit.auth import AuthSettings, Authenticator, TokenGate, caller_of, install_auth_error_handler
from flow_kit.aws import AwsClients
from flow_rules.codes import Code
from flow_kit.db import create_database, is_transient, ping
from flow_kit.entitlements import EntitlementSettings
from flow_kit.errors import ErrorOut, FlowError, StrictJSONRoute, error_body, install_error_handlers
from flow_rules.events import EventOut
from flow_kit.health import docs_options, mount_health
from flow_kit.limits import BodySizeLimit
from flow_rules.posting import DecimalInteger, PostingIn, validation_code
from flow_kit.serve import load_settings

from .accounts import AccountRegistry, install_account_routes
from .catalogue import EventCatalogue
from .idempotency import RequestLedger
from .intake import POSTINGS, Intake, Verdict
from .publisher import RequestPublisher
from .schemas import Accepted, BatchIn, BatchItem, BatchOut, EventIn, EventPatch
from .settings import IngestSettings

__all__ = ["create_app"]

MAX_BATCH_ITEMS = 1000
_EVENT_FIELDS = {"description": Code.INVALID_EVENT, "active": Code.INVALID_EVENT, "allowdebit": Code.INVALID_EVENT,
                 "allowcredit": Code.INVALID_EVENT, "forced": Code.INVALID_EVENT, "code": Code.INVALID_EVENTCODE}


def _errors(*statuses: int) -> dict:
    return {status: {"model": ErrorOut} for status in statuses}


def _request_code(request: Request, errors: list[dict]) -> Code:
    """The code of a refused request: a posting field's own code, or the event or batch one."""
    path = request.url.path
    if path.startswith("/v1/events"):
        return validation_code(errors, _EVENT_FIELDS, Code.INVALID_EVENT)
    if path.startswith("/v1/accounts"):
        return validation_code(errors, {"branch": Code.INVALID_BRANCH, "account": Code.INVALID_ACCOUNT},
                               Code.INVALID_ACCOUNT_CHANGE)
    if path == "/v1/transactions/batch":
        return validation_code(errors, {"items": Code.INVALID_BATCH}, Code.INVALID_BATCH)
    code = validation_code(errors)
    POSTINGS.labels("rejected", code.value).inc()
    return code


def create_app(settings: IngestSettings, auth_settings: AuthSettings | None = None,
               entitlement_settings: EntitlementSettings | None = None) -> FastAPI:
    auth = Authenticator(auth_settings or AuthSettings())
    # FLOW_ENTITLEMENTS: None (unset) means no entitlement checks; a bad value stops the service.
    entitlements = (entitlement_settings or load_settings("ingest", EntitlementSettings)).entitlements

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with AsyncExitStack() as stack:
            db = create_database(settings, "flow-ingest")
            stack.push_async_callback(db.dispose)
            sns = await stack.enter_async_context(AwsClients(settings).client("sns"))
            publisher = RequestPublisher(sns, settings.request_topic_arn, settings.publish_calls)
            app.state.catalogue = EventCatalogue(db, settings.event_cache_seconds)
            app.state.accounts = AccountRegistry(db)
            # A connection stays free for catalogue reads while the ledger's transactions are under way.
            ledger = RequestLedger(db, max_in_flight=max(1, settings.database_pool_size - 1))
            app.state.intake = Intake(settings, app.state.catalogue, ledger, publisher)
            app.state.checks = {"database": lambda: ping(db), "sns": publisher.check}
            await auth.prefetch()
            yield

    app = FastAPI(title="FLOW ingest", version="0.2.0", lifespan=lifespan, **docs_options(settings))
    app.router.route_class = StrictJSONRoute  # bodies read as strict JSON: see flow_kit.errors.strict_loads
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes,
                       per_path={"/v1/transactions/batch": settings.max_batch_body_bytes})
    # Outermost of the two: a request's token (and its route's scopes) is checked before any body is read.
    app.add_middleware(TokenGate, authenticator=auth)
    app.add_middleware(AccessLog)  # outermost: one flow.access line per request, refused ones too
    install_error_handlers(app, validation_code=_request_code)
    install_auth_error_handler(app)
    mount_health(app, settings, lambda: app.state.checks, database="flow-ingest-health")  # off the request pool
    writer = [Depends(auth.require("flow.write"))]
    admin = [Depends(auth.require("flow.admin"))]

    async def accept(items: list, request: Request) -> list[Verdict]:
        caller = caller_of(getattr(request.state, "claims", None))  # who posted, recorded with each posting
        claims = getattr(request.state, "claims", None)  # what the client may post (None: no checks)
        grant = entitlements.grant(claims and claims.client_id) if entitlements is not None else None
        try:
            # A lost connection (a failover, a password rotation ending sessions) is tried again at
            # once: the database work comes before anything is published, so a retry repeats nothing.
            async for attempt in AsyncRetrying(retry=retry_if_exception(is_transient), stop=stop_after_attempt(3),
                                               wait=wait_exponential_jitter(multiplier=0.05, max=0.5), reraise=True):
                with attempt:
                    return await app.state.intake.accept(items, caller, grant=grant)
        except FlowError:
            raise
        except Exception as exc:  # the database or SNS is down: nothing was accepted, the client retries
            raise FlowError(Code.UNAVAILABLE, 503) from exc

    @app.post("/v1/transactions", status_code=202, response_model=Accepted, dependencies=writer,
              responses=_errors(401, 403, 409, 413, 422, 503),
              summary="Accept one posting for asynchronous application")
    async def post_transaction(posting: PostingIn, request: Request) -> Accepted | JSONResponse:
        (verdict,) = await accept([posting], request)
        if verdict.status != "accepted":
            return JSONResponse(error_body(verdict.code), status_code=verdict.http_status)
        return Accepted(id=str(verdict.id), tracekey=str(verdict.tracekey))

    @app.post("/v1/transactions/batch", status_code=202, response_model=BatchOut, dependencies=writer,
              responses=_errors(401, 403, 413, 422, 503),
              summary="Accept up to 1,000 postings; each is judged on its own and gets its own answer")
    async def post_batch(batch: BatchIn, request: Request) -> BatchOut:
        if not 1 <= len(batch.items) <= MAX_BATCH_ITEMS:
            raise FlowError(Code.INVALID_BATCH, 422)
        items: list[PostingIn | Code] = []
        for item in batch.items:
            try:
                items.append(PostingIn.model_validate(item))
            except ValidationError as exc:
                items.append(validation_code(exc.errors()))
        verdicts = await accept(items, request)
        out = [BatchItem(index=n, status=v.status, id=v.id and str(v.id), tracekey=v.tracekey and str(v.tracekey),
                         code=v.code and v.code.value, message=v.code and v.code.message)
               for n, v in enumerate(verdicts)]
        return BatchOut(items=out, **{s: sum(v.status == s for v in verdicts) for s in ("accepted", "rejected", "failed")})

    @app.post("/v1/events", status_code=201, response_model=EventOut, dependencies=admin,
              responses=_errors(401, 403, 409, 413, 422), summary="Add an event to the catalogue")
    async def create_event(event: EventIn, request: Request) -> EventOut:
        created = await app.state.catalogue.create(event.description, event.active, event.allowdebit,
                                                   event.allowcredit, event.code,
                                                   caller=caller_of(getattr(request.state, "claims", None)),
                                                   forced=event.forced)
        return EventOut(**created.__dict__)

    @app.patch("/v1/events/{code}", response_model=EventOut, dependencies=admin,
               responses=_errors(401, 403, 404, 413, 422),
               summary="Rename an event, activate or deactivate it, allow or refuse debits and credits")
    async def update_event(code: Annotated[DecimalInteger(1, 2_147_483_647), Path()],
                           changes: Annotated[EventPatch, Body()], request: Request) -> EventOut:
        updated = await app.state.catalogue.update(code, changes.model_dump(exclude_none=True),
                                                   caller=caller_of(getattr(request.state, "claims", None)))
        return EventOut(**updated.__dict__)

    install_account_routes(app, admin)
    return app
