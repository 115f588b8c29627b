"""The ingest API: checks the caller's token, validates postings and publishes them to FlowRequest;
admins manage the event catalogue and the account registry here too. The routes are in
flow_ingest.endpoints, what they use while the service runs in flow_ingest.state."""

from functools import partial

from fastapi import FastAPI, Request

from flow_kit.access import AccessLog
from flow_kit.answers import JSONAnswer
from flow_kit.auth import Authenticator, AuthSettings, TokenGate, install_auth_error_handler
from flow_kit.entitlements import EntitlementSettings
from flow_kit.errors import install_error_handlers
from flow_kit.health import docs_options, mount_health
from flow_kit.limits import BodySizeLimit
from flow_kit.serve import include_routes, load_settings
from flow_rules.codes import Code
from flow_rules.posting import validation_code

from .endpoints import accounts, events, transactions
from .intake import POSTINGS
from .settings import IngestSettings
from .state import lifespan, running

__all__ = ["create_app"]

_EVENT_FIELDS = {
    "description": Code.INVALID_EVENT,
    "active": Code.INVALID_EVENT,
    "allowdebit": Code.INVALID_EVENT,
    "allowcredit": Code.INVALID_EVENT,
    "forced": Code.INVALID_EVENT,
    "code": Code.INVALID_EVENTCODE,
}


def _request_code(request: Request, errors: list[dict]) -> Code:
    """The code of a refused request: a posting field's own code, or the event or batch one."""
    path = request.url.path
    if path.startswith("/v1/events"):
        return validation_code(errors, _EVENT_FIELDS, Code.INVALID_EVENT)
    if path.startswith("/v1/accounts"):
        return validation_code(
            errors, {"branch": Code.INVALID_BRANCH, "account": Code.INVALID_ACCOUNT}, Code.INVALID_ACCOUNT_CHANGE
        )
    if path == "/v1/transactions/batch":
        return validation_code(errors, {"items": Code.INVALID_BATCH}, Code.INVALID_BATCH)
    code = validation_code(errors)
    POSTINGS.labels("rejected", code.value).inc()
    return code


def create_app(
    settings: IngestSettings,
    auth_settings: AuthSettings | None = None,
    entitlement_settings: EntitlementSettings | None = None,
) -> FastAPI:
    auth = Authenticator(auth_settings or AuthSettings())
    # FLOW_ENTITLEMENTS: None (unset) means no entitlement checks; a bad value stops the service.
    entitlements = (entitlement_settings or load_settings("ingest", EntitlementSettings)).entitlements
    app = FastAPI(
        title="FLOW ingest",
        version="0.2.0",
        lifespan=partial(lifespan, settings=settings, auth=auth, entitlements=entitlements),
        default_response_class=JSONAnswer,
        **docs_options(settings),
    )
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        per_path={"/v1/transactions/batch": settings.max_batch_body_bytes},
    )
    # Outermost of the two: a request's token (and its route's scopes) is checked before any body is read.
    app.add_middleware(TokenGate, authenticator=auth)
    app.add_middleware(AccessLog)  # outermost: one flow.access line per request, refused ones too
    install_error_handlers(app, validation_code=_request_code, configured=settings.configured)
    install_auth_error_handler(app)
    # /readyz checks the database on a connection of its own, off the request pool.
    mount_health(app, settings, lambda: running(app).checks(), database="flow-ingest-health")
    include_routes(app, transactions.router(auth), events.router(auth), accounts.router(auth))
    return app
