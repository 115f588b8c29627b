"""Bearer-token authentication for FLOW's APIs: OAuth2 access tokens as JWTs from an OIDC issuer.

A token is accepted only when it is signed by a key from the issuer's JWKS (found by OIDC discovery),
with an allowed asymmetric algorithm that fits that key, names the configured issuer and one of the
configured audiences, is inside its validity window, and carries the scopes the endpoint asks for.
Delegated scopes come from `scp` (Microsoft Entra ID) or `scope` (generic OAuth2); a token without
either is app-only and its permissions come from `roles` (Entra application permissions), never both
pooled, so Entra ID and any other OIDC issuer work alike. ID tokens (and other JWTs whose `typ` is not
an access token's) are refused.

The token itself is never logged nor echoed: refusals carry a fixed message per code.

    auth = Authenticator(AuthSettings())          # FLOW_AUTH_ISSUER, FLOW_AUTH_AUDIENCE, ...
    install_auth_error_handler(app)
    @app.post("/v1/transactions", dependencies=[Depends(auth.require("flow.write"))])
"""

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
import jwt
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from flow_rules.codes import Code

__all__ = [
    "ANONYMOUS",
    "AUTH_CODES",
    "DEFAULT_ALGORITHMS",
    "AuthError",
    "AuthSettings",
    "Authenticator",
    "Claims",
    "TokenGate",
    "TokenVerifier",
    "caller_of",
    "install_auth_error_handler",
]

_log = logging.getLogger(__name__)

# Why a request was refused -> its code. The message never varies, so nothing a client sent, least of
# all the token, can come back in it.
AUTH_CODES: dict[str, Code] = {
    "missing": Code.TOKEN_MISSING,
    "invalid": Code.TOKEN_INVALID,
    "expired": Code.TOKEN_EXPIRED,
    "issuer": Code.TOKEN_WRONG_ISSUER,
    "audience": Code.TOKEN_WRONG_AUDIENCE,
    "scope": Code.TOKEN_LACKS_SCOPE,
    "unavailable": Code.UNAVAILABLE,
}
_STATUS = {"scope": 403, "unavailable": 503}
_REALM = "flow"

# Which JWK may verify which algorithm, (kty, crv). Asymmetric only: a public key must never be
# usable as an HMAC secret, and `none` is no algorithm at all.
_KEY_FOR_ALGORITHM: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
}
DEFAULT_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")
_MIN_RSA_BITS = 2048
_ACCESS_TOKEN_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})  # JOSE `typ`, case-insensitive
_ID_TOKEN_CLAIMS = ("nonce", "at_hash", "c_hash")
_VERIFIED_SECONDS = 60  # how long a verified token is answered from memory
_VERIFIED_MAX = 1024  # tokens remembered at most


def _words(value: Any) -> tuple[str, ...]:
    """A space- or comma-separated string, or a list, as a tuple of non-empty strings."""
    if isinstance(value, str):
        return tuple(word for word in value.replace(",", " ").split() if word)
    return tuple(value)


def _fetchable(url: str) -> bool:
    """HTTPS, or plain HTTP to this machine only (the dev issuer): keys fetched over the network
    in clear could be swapped by anyone on the path, and with them every token."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


class AuthSettings(BaseSettings):
    """Read from FLOW_AUTH_* (shared by every service), or built directly with keyword arguments."""

    model_config = SettingsConfigDict(env_prefix="FLOW_AUTH_", extra="ignore", frozen=True)

    enabled: bool = True
    # The exact `iss` of the tokens, e.g. https://login.microsoftonline.com/{tenant-id}/v2.0
    issuer: str | None = None
    # Any one must be in `aud`, e.g. "api://flow" and the app's client id (Entra v2 tokens carry the id).
    audience: Annotated[tuple[str, ...], NoDecode] = ()
    # Defaults to {issuer}/.well-known/openid-configuration; set it when the issuer is reached by another address.
    discovery_url: str | None = None
    algorithms: Annotated[tuple[str, ...], NoDecode] = DEFAULT_ALGORITHMS
    jwks_cache_seconds: float = Field(3600.0, gt=0)
    # At most one JWKS fetch per this interval beyond the scheduled ones (unknown kid, issuer outage).
    jwks_refresh_min_seconds: float = Field(10.0, ge=0)
    leeway_seconds: float = Field(60.0, ge=0, le=300)
    http_timeout_seconds: float = Field(5.0, gt=0, le=60)

    @field_validator("audience", "algorithms", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _words(value) if isinstance(value, str | list | tuple) else value

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        refused = [alg for alg in value if alg not in _KEY_FOR_ALGORITHM]
        if refused or not value:
            raise ValueError(
                f"algorithms must be a non-empty subset of {', '.join(_KEY_FOR_ALGORITHM)}; "
                f"refused: {', '.join(refused) or 'none given'}"
            )
        return value

    @model_validator(mode="after")
    def _complete(self) -> "AuthSettings":
        if self.enabled:
            if not self.issuer:
                raise ValueError("issuer is required when authentication is enabled")
            if not self.audience:
                raise ValueError("audience is required when authentication is enabled")
            if not _fetchable(self.discovery_endpoint):
                raise ValueError("discovery must use https (plain http only to localhost)")
        return self

    @property
    def discovery_endpoint(self) -> str:
        return self.discovery_url or f"{(self.issuer or '').rstrip('/')}/.well-known/openid-configuration"


@dataclass(frozen=True)
class Claims:
    """Who called: the verified token's subject, its scopes (scp + scope, or roles for an app-only
    token) and all its claims."""

    subject: str
    scopes: frozenset[str]
    client_id: str | None = None
    issuer: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def has(self, *scopes: str) -> bool:
        return set(scopes) <= self.scopes


# What an endpoint sees when authentication is disabled (local experiments only).
ANONYMOUS = Claims(subject="anonymous", scopes=frozenset())


def caller_of(claims: Claims | None) -> tuple[str, str | None] | None:
    """Who called, as (sub, client) to record with what they did; None when authentication is
    disabled (nobody was verified)."""
    if claims is None or claims is ANONYMOUS:
        return None
    return claims.subject, claims.client_id


class AuthError(Exception):
    """A refused request. `detail` says why, for logs only; clients get `code` and `message`."""

    def __init__(
        self, status_code: int, code: str, message: str, www_authenticate: str | None = None, detail: str = ""
    ) -> None:
        super().__init__(f"{code} {message}")
        self.status_code = status_code
        self.code = code
        self.message = message
        self.www_authenticate = www_authenticate
        self.detail = detail

    @classmethod
    def of(cls, reason: str, detail: str = "", scope: str | None = None) -> "AuthError":
        """`reason` is a key of AUTH_CODES; the RFC 6750 challenge follows from it."""
        code, message = AUTH_CODES[reason].value, AUTH_CODES[reason].message
        if reason == "missing":  # no credentials: a bare challenge, no error code (RFC 6750 section 3.1)
            challenge = f'Bearer realm="{_REALM}"'
        elif reason == "scope":
            challenge = (
                f'Bearer realm="{_REALM}", error="insufficient_scope", error_description="{message}", scope="{scope}"'
            )
        elif reason == "unavailable":
            challenge = None
        else:
            challenge = f'Bearer realm="{_REALM}", error="invalid_token", error_description="{message}"'
        return cls(_STATUS.get(reason, 401), code, message, challenge, detail or reason)


def install_auth_error_handler(app: FastAPI) -> None:
    async def _auth_error(request: Request, exc: AuthError) -> JSONResponse:
        headers = {"Cache-Control": "no-store"}
        if exc.www_authenticate:
            headers["WWW-Authenticate"] = exc.www_authenticate
        return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.status_code, headers=headers)

    # Starlette types every handler as taking any Exception; it calls this one with AuthErrors only.
    app.add_exception_handler(AuthError, _auth_error)  # type: ignore[arg-type]


class _IssuerError(Exception):
    """Discovery or JWKS fetch failed; the message names URLs and causes, never a token."""


class TokenVerifier:
    """Verifies access tokens against the issuer's keys, fetched by OIDC discovery and cached.

    Keys are refetched when the cache expires (in the background: requests keep using the cached
    keys meanwhile), or at once when a token names an unknown `kid` (key rotation), but never more
    than once per `jwks_refresh_min_seconds`, whatever the tokens say. When a refresh fails the keys
    already known keep working. Each fetch uses its own short-lived client: fetches are rare, and
    nothing needs closing at shutdown.
    """

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self._jwks_uri: str | None = None
        self._keys: dict[str, dict] = {}
        self._parsed: dict[tuple[str, str], jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # monotonic time of the last successful JWKS fetch
        self._tried_at = -math.inf  # of the last attempt, successful or not
        self._lock = asyncio.Lock()
        self._behind: asyncio.Task | None = None  # the background refresh, held so it is not collected
        self._verified: OrderedDict[str, tuple[Claims, float]] = OrderedDict()  # token -> (claims, until)

    async def verify(self, token: str) -> Claims:
        """The token's claims, or AuthError (401 R071-R074, 503 when no key could be had).

        A token verified in the last minute is answered from memory (clients reuse a token for
        many calls, and a signature check costs more than the rest of a read); never past its
        `exp`, and forgotten whenever the keys are fetched again."""
        hit = self._verified.get(token)
        if hit and time.time() < hit[1]:
            return hit[0]
        claims = await self._verify(token)
        self._verified[token] = (claims, min(time.time() + _VERIFIED_SECONDS, float(claims.raw["exp"])))
        if len(self._verified) > _VERIFIED_MAX:
            self._verified.popitem(last=False)
        return claims

    async def _verify(self, token: str) -> Claims:
        alg, kid = self._header(token)
        key = self._public_key(await self._jwk(kid), kid, alg)
        s = self.settings
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=list(s.audience),
                issuer=s.issuer,
                leeway=s.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.MissingRequiredClaimError as exc:
            reason = {"iss": "issuer", "aud": "audience"}.get(exc.claim, "invalid")
            raise AuthError.of(reason, f"no {exc.claim}") from None
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError) as exc:  # exp, nbf, or iat in the future
            raise AuthError.of("expired", type(exc).__name__) from None
        except jwt.InvalidIssuerError:
            raise AuthError.of("issuer") from None
        except jwt.InvalidAudienceError:
            raise AuthError.of("audience") from None
        except jwt.PyJWTError as exc:
            raise AuthError.of("invalid", type(exc).__name__) from None
        return self._claims(payload)

    async def prefetch(self) -> bool:
        """Fetches the keys now (e.g. at start-up) so the first request does not wait; never raises."""
        await self._refresh(None)
        return self._fetched_at is not None

    def _header(self, token: str) -> tuple[str, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError.of("invalid", "malformed token") from None
        alg, kid = header.get("alg"), header.get("kid")
        typ = header.get("typ")
        # RFC 9068 access tokens say at+jwt; most issuers (Entra) say JWT or nothing. Anything else (an
        # ID token's id_token, logout+jwt, dpop+jwt...) is some other token, never an access token.
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCESS_TOKEN_TYPES):
            raise AuthError.of("invalid", "not an access token (typ)")
        if alg not in self.settings.algorithms:  # `none`, HS*, anything not allowed
            raise AuthError.of("invalid", "algorithm not allowed")
        if not isinstance(kid, str) or not kid:
            raise AuthError.of("invalid", "no kid")
        return alg, kid

    def _public_key(self, jwk: dict, kid: str, alg: str) -> jwt.PyJWK:
        """The JWK as a key for `alg`, refused unless its type, curve and own `alg` fit: so a token
        cannot pick an algorithm that reads the key some other way."""
        if (kid, alg) in self._parsed:
            return self._parsed[(kid, alg)]
        kty, crv = _KEY_FOR_ALGORITHM[alg]
        if jwk.get("kty") != kty or (crv and jwk.get("crv") != crv) or jwk.get("alg", alg) != alg:
            raise AuthError.of("invalid", "algorithm does not fit the key")
        try:
            key = jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError:
            raise AuthError.of("invalid", "unusable key in the issuer's JWKS") from None
        if kty == "RSA" and key.key.key_size < _MIN_RSA_BITS:
            raise AuthError.of("invalid", "RSA key too short")
        self._parsed[(kid, alg)] = key
        return key

    def _due(self, kid: str | None, now: float) -> bool:
        if now - self._tried_at < self.settings.jwks_refresh_min_seconds:
            return False  # rate limit: neither bad kids nor an issuer outage make us hammer the issuer
        expired = self._fetched_at is None or now - self._fetched_at >= self.settings.jwks_cache_seconds
        return expired or (kid is not None and kid not in self._keys)

    async def _jwk(self, kid: str) -> dict:
        if kid not in self._keys and self._lock.locked():
            async with self._lock:  # a fetch is under way: wait for it rather than answer without keys
                pass
        if self._due(kid, time.monotonic()):
            if kid not in self._keys:
                await self._refresh(kid)
            elif self._behind is None or self._behind.done():  # known key, old cache: answer now, refresh behind
                self._behind = asyncio.create_task(self._refresh(None))
        if kid in self._keys:
            return self._keys[kid]
        if self._fetched_at is None:
            raise AuthError.of("unavailable", "issuer keys not available")
        raise AuthError.of("invalid", "unknown kid")

    async def _refresh(self, kid: str | None) -> None:
        async with self._lock:
            now = time.monotonic()
            if not self._due(kid, now):
                return  # another request refreshed (or tried) while this one waited
            self._tried_at = now
            try:
                keys = await self._fetch()
            except Exception as exc:  # whatever went wrong, it is an issuer outage for us, not a 500
                self._jwks_uri = None  # rediscover next time: the issuer may have moved its keys
                _log.warning(
                    "could not fetch the issuer's signing keys",
                    extra={"issuer": self.settings.issuer, "error": f"{type(exc).__name__}: {exc}"},
                )
                return
            self._keys, self._parsed, self._fetched_at = keys, {}, time.monotonic()
            self._verified.clear()  # a key may have been withdrawn
            _log.info("issuer signing keys fetched", extra={"issuer": self.settings.issuer, "kids": sorted(keys)})

    async def _fetch(self) -> dict[str, dict]:
        async with httpx.AsyncClient(timeout=self.settings.http_timeout_seconds, follow_redirects=False) as client:
            if self._jwks_uri is None:
                discovery = await self._get_json(client, self.settings.discovery_endpoint)
                # OIDC Discovery 1.0 section 4.3: the document must name exactly the issuer we trust.
                if discovery.get("issuer") != self.settings.issuer:
                    raise _IssuerError(f"discovery document names issuer {discovery.get('issuer')!r}")
                uri = discovery.get("jwks_uri")
                if not isinstance(uri, str) or not _fetchable(uri):
                    raise _IssuerError("discovery document has no usable jwks_uri")
                self._jwks_uri = uri
            jwks = await self._get_json(client, self._jwks_uri)
        entries = jwks.get("keys")
        if not isinstance(entries, list):
            raise _IssuerError("JWKS has no keys list")
        # Signing keys only (Entra also lists none other, but `use` may say "enc" elsewhere).
        return {
            k["kid"]: k
            for k in entries
            if isinstance(k, dict) and isinstance(k.get("kid"), str) and k.get("use", "sig") == "sig"
        }

    @staticmethod
    async def _get_json(client: httpx.AsyncClient, url: str) -> dict:
        response = await client.get(url, headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise _IssuerError(f"GET {url} answered {response.status_code}")
        document = response.json()
        if not isinstance(document, dict):
            raise _IssuerError(f"GET {url} did not answer a JSON object")
        return document

    @staticmethod
    def _claims(payload: dict[str, Any]) -> Claims:
        # NumericDate is a JSON number (RFC 7519); PyJWT would also take "1700000000" as a string.
        for name in ("exp", "nbf", "iat"):
            value = payload.get(name)
            if name in payload and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise AuthError.of("invalid", f"{name} is not a number")
        # An OIDC ID token says who signed in, to the client; it grants nothing to an API, even when its
        # audience and signature fit. Its marks: nonce, at_hash, c_hash (OIDC Core 2, 3.1.3.6, 3.3.2.11).
        if any(name in payload for name in _ID_TOKEN_CLAIMS):
            raise AuthError.of("invalid", "an ID token, not an access token")
        # Delegated permissions (a user's, through a client) come from scp (Entra) or scope (OAuth2);
        # application permissions (a client's own, no user) from roles. Never pooled: a token carrying
        # delegated scopes is judged by them alone, so a user's app roles never widen what a client may do
        # on their behalf; a token without scp/scope is an app-only one, judged by its roles.
        delegated = "scp" in payload or "scope" in payload
        idtyp = payload.get("idtyp")  # Entra's optional claim: "app" for app-only tokens, "user" otherwise
        if (idtyp == "app" and delegated) or (idtyp == "user" and not delegated):
            raise AuthError.of("invalid", f"idtyp {idtyp} does not fit the token's permissions")
        scopes: set[str] = set()
        for name in ("scp", "scope") if delegated else ("roles",):
            value = payload.get(name)
            if isinstance(value, str):
                scopes.update(value.split())
            elif isinstance(value, list):
                scopes.update(item for item in value if isinstance(item, str))
        # azp: OIDC and Entra v2; appid: Entra v1; client_id: RFC 9068.
        client_id = next((payload[n] for n in ("azp", "appid", "client_id") if isinstance(payload.get(n), str)), None)
        subject = payload.get("sub") or client_id
        if not isinstance(subject, str):
            raise AuthError.of("invalid", "no subject")
        return Claims(
            subject=subject, scopes=frozenset(scopes), client_id=client_id, issuer=payload.get("iss"), raw=payload
        )


# In OpenAPI this makes /docs offer an "Authorize" box; auto_error=False lets us answer in FLOW's format.
_BEARER = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    scheme_name="bearer",
    description="OAuth2 access token (JWT) from FLOW's issuer",
)


class Authenticator:
    """One per app. `require(*scopes)` gives a FastAPI dependency that answers the verified Claims
    (also set as `request.state.claims`) or raises AuthError; use it in `dependencies=[...]` or as
    a parameter when the endpoint wants to know the caller."""

    def __init__(self, settings: AuthSettings, verifier: TokenVerifier | None = None) -> None:
        self.settings = settings
        self.verifier = verifier or (TokenVerifier(settings) if settings.enabled else None)
        if not settings.enabled:
            _log.warning("authentication is disabled: every request is let through")

    async def prefetch(self) -> None:
        """Fetches the issuer's keys at start-up, so the first requests need not wait for them."""
        if self.verifier:
            await self.verifier.prefetch()

    def require(self, *scopes: str) -> Callable[..., Awaitable[Claims]]:
        needed = frozenset(scopes)

        async def dependency(
            request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_BEARER)
        ) -> Claims:
            if self.verifier is None:
                request.state.claims = ANONYMOUS
                return ANONYMOUS
            try:
                claims = request.scope.get(_SCOPE_KEY)  # verified by the TokenGate before the body was read
                if claims is None:
                    if credentials is None:  # no Authorization header, or another scheme such as Basic
                        raise AuthError.of("missing", "no bearer credentials")
                    claims = await self.verifier.verify(credentials.credentials)
                if not claims.has(*needed):
                    raise AuthError.of("scope", "scope missing", scope=" ".join(sorted(needed)))
            except AuthError as exc:
                _log.info("request refused", extra={"code": exc.code, "reason": exc.detail, "path": request.url.path})
                raise
            request.state.claims = claims
            return claims

        # So the TokenGate finds what a route asks for; mypy knows no attributes set on a function.
        dependency.flow_scopes = needed  # type: ignore[attr-defined]
        return dependency

    async def authenticate(self, authorization: str | None, needed: frozenset[str]) -> Claims:
        """The claims of an `Authorization` header value carrying a token with `needed` scopes, or AuthError."""
        if self.verifier is None:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:  # as HTTPBearer reads it: no header, or another scheme
            raise AuthError.of("missing", "no bearer credentials")
        claims = await self.verifier.verify(token)
        if not claims.has(*needed):
            raise AuthError.of("scope", "scope missing", scope=" ".join(sorted(needed)))
        return claims


_SCOPE_KEY = "flow.claims"  # where the TokenGate leaves the verified claims in the ASGI scope


def _scopes_of(dependant) -> frozenset[str] | None:
    """The scopes `Authenticator.require` dependencies of a FastAPI route ask for (None: no token needed)."""
    found: set[str] | None = None
    for sub in dependant.dependencies:
        scopes = getattr(sub.call, "flow_scopes", None)
        if scopes is not None:
            found = (found or set()) | scopes
        deeper = _scopes_of(sub)
        if deeper is not None:
            found = (found or set()) | deeper
    return None if found is None else frozenset(found)


class TokenGate:
    """ASGI middleware: checks the bearer token of a request whose route needs one (its
    `Authenticator.require` scopes) from the headers alone, BEFORE anything reads the body, and
    answers a refused one at once (401/403, R070-R075, as the dependency would). So an
    unauthenticated or wrongly-scoped request costs its headers, not its body. The verified claims
    are left in the scope, where `require` takes them instead of verifying the token again.

    Install it outermost of anything that reads bodies (add it after BodySizeLimit):

        app.add_middleware(TokenGate, authenticator=auth)
    """

    def __init__(self, app, authenticator: "Authenticator") -> None:
        self.app = app
        self.auth = authenticator
        self._needs: dict[int, tuple[Any, frozenset[str] | None]] = {}  # id(route) -> (route, its scopes)

    def _needed(self, scope) -> frozenset[str] | None:
        from starlette.routing import Match  # starlette comes with FastAPI

        router = getattr(scope.get("app"), "router", None)
        for route in getattr(router, "routes", ()):
            match, _ = route.matches(scope)
            if match is Match.FULL:
                known = self._needs.get(id(route))
                if known is None or known[0] is not route:
                    dependant = getattr(route, "dependant", None)
                    known = (route, _scopes_of(dependant) if dependant is not None else None)
                    self._needs[id(route)] = known
                return known[1]
        return None  # no route (404/405): nothing reads the body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.auth.verifier is None:
            return await self.app(scope, receive, send)
        needed = self._needed(scope)
        if needed is None:
            return await self.app(scope, receive, send)
        authorization = None
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        try:
            claims = await self.auth.authenticate(authorization, needed)
        except AuthError as exc:
            _log.info("request refused", extra={"code": exc.code, "reason": exc.detail, "path": scope.get("path")})
            headers = {"Cache-Control": "no-store"}
            if exc.www_authenticate:
                headers["WWW-Authenticate"] = exc.www_authenticate
            response = JSONResponse(
                {"code": exc.code, "message": exc.message}, status_code=exc.status_code, headers=headers
            )
            return await response(scope, receive, send)  # a Response never reads the request's body
        scope[_SCOPE_KEY] = claims
        await self.app(scope, receive, send)
