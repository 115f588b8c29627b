"""The query API: transactions, statements, daily and point-in-time balances, accounts, the event
catalogue. The routes are in flow_query.endpoints, what they use while the service runs in
flow_query.state."""

from functools import partial

from fastapi import FastAPI, Request

from flow_kit.access import AccessLog
from flow_kit.answers import JSONAnswer
from flow_kit.auth import Authenticator, AuthSettings, TokenGate, install_auth_error_handler
from flow_kit.entitlements import EntitlementSettings
from flow_kit.errors import install_error_handlers
from flow_kit.health import Check, docs_options, mount_health
from flow_kit.serve import include_routes, load_settings
from flow_rules.codes import Code
from flow_rules.posting import validation_code

from .cursor import CursorCodec
from .endpoints import accounts, balances, events, statements, transactions
from .replica import lag_check
from .settings import QuerySettings
from .state import lifespan

__all__ = ["create_app"]

_QUERY_CODES = {
    "branch": Code.INVALID_BRANCH,
    "account": Code.INVALID_ACCOUNT,
    "from": Code.INVALID_RANGE,
    "to": Code.INVALID_RANGE,
    "date": Code.INVALID_RANGE,
    "id": Code.INVALID_ID,
    "tracekey": Code.INVALID_TRACEKEY,
    "limit": Code.INVALID_LIMIT,
    "code": Code.INVALID_EVENTCODE,
}


def _request_code(request: Request, errors: list[dict]) -> Code:
    return validation_code(errors, _QUERY_CODES, Code.INVALID_QUERY)


def create_app(
    settings: QuerySettings,
    auth_settings: AuthSettings | None = None,
    entitlement_settings: EntitlementSettings | None = None,
) -> FastAPI:
    auth = Authenticator(auth_settings or AuthSettings())
    # FLOW_ENTITLEMENTS: None (unset) means no entitlement checks; a bad value stops the service.
    entitlements = (entitlement_settings or load_settings("query", EntitlementSettings)).entitlements
    cursors = CursorCodec.from_setting(settings.cursor_key)
    app = FastAPI(
        title="FLOW query",
        version="0.2.0",
        lifespan=partial(lifespan, settings=settings, auth=auth, entitlements=entitlements, cursors=cursors),
        default_response_class=JSONAnswer,
        **docs_options(settings),
    )
    install_error_handlers(app, validation_code=_request_code, configured=settings.configured)
    install_auth_error_handler(app)
    app.add_middleware(TokenGate, authenticator=auth)  # the token is checked before anything reads the request
    app.add_middleware(AccessLog)  # outermost: one flow.access line per request, refused ones too

    def checks() -> dict[str, Check]:
        assert health_db is not None  # mount_health made it, for database=...
        return {"replica": lag_check(health_db, settings.max_replica_lag_seconds)}

    # Readiness reads on a connection of its own (flow-query-health), never on the reader's pool.
    health_db = mount_health(app, settings, checks, database="flow-query-health")
    include_routes(
        app,
        transactions.router(auth),
        statements.router(auth),
        balances.router(auth),
        accounts.router(auth),
        events.router(auth),
    )
    return app
