"""Bearer-token authentication (flow_kit.auth) against a real dev issuer (tools.devstack.issuer).

A tiny API with one endpoint per scope stands in for the services; it runs in-process over
httpx's ASGI transport, while discovery and JWKS go over real HTTP to the issuer. No session stack.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import Depends, FastAPI
from pydantic import ValidationError

from flow_kit.auth import AuthSettings, Authenticator, Claims, install_auth_error_handler
from tests.waiting import wait_until_async
from tools.devstack.issuer import DevIssuer
from tools.devstack.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
READ, WRITE, ADMIN = "/v1/accounts/0001/000000001/balances", "/v1/transactions", "/v1/events"


# --- the API under test ----------------------------------------------------------------------------

def api(settings: AuthSettings) -> FastAPI:
    auth = Authenticator(settings)
    app = FastAPI()
    install_auth_error_handler(app)

    @app.post(WRITE, status_code=202, dependencies=[Depends(auth.require("flow.write"))])
    async def post() -> dict:
        return {"status": "accepted"}

    @app.get(READ)
    async def read(claims: Claims = Depends(auth.require("flow.read"))) -> dict:
        return {"subject": claims.subject, "client_id": claims.client_id, "scopes": sorted(claims.scopes)}

    @app.get(ADMIN, dependencies=[Depends(auth.require("flow.admin"))])
    async def events() -> list:
        return []

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    return app


def settings_for(dev: DevIssuer, **overrides) -> AuthSettings:
    return AuthSettings(**{"enabled": True, "issuer": dev.issuer, "audience": [dev.audience],
                           "discovery_url": dev.discovery_url, "leeway_seconds": 30,
                           "jwks_refresh_min_seconds": 60, **overrides})


def client_for(settings: AuthSettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api(settings)), base_url="http://flow")


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def assert_refused(response: httpx.Response, status: int, code: str, token: str | None = None,
                   error: str | None = "invalid_token") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message"} and body["code"] == code
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    if error:
        assert f'error="{error}"' in challenge
    else:
        assert "error=" not in challenge
    if token:  # never echoed, anywhere in the answer
        assert token not in response.text
        assert all(token not in value for value in response.headers.values())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict, payload: dict, sign=lambda signing_input: b"") -> str:
    """A token built by hand, for what PyJWT rightly refuses to make."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


# --- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def issuer() -> DevIssuer:
    with DevIssuer() as issuer:
        yield issuer


@pytest.fixture
async def client(issuer: DevIssuer) -> httpx.AsyncClient:
    async with client_for(settings_for(issuer)) as client:
        yield client


@pytest.fixture(scope="module")
def stranger_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(autouse=True)
def no_token_in_logs(caplog):
    """Whatever happens, no JWT (they all start with `eyJ`, base64 of '{"') reaches a log."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.get_records("setup") + caplog.get_records("call"):  # .records is teardown's only
        assert "eyJ" not in record.getMessage() and "eyJ" not in str(record.__dict__), record.getMessage()


# --- no usable credentials -------------------------------------------------------------------------

async def test_missing_header(client):
    assert_refused(await client.get(READ), 401, "R070", error=None)
    assert (await client.get("/healthz")).status_code == 200  # open endpoints stay open


async def test_other_scheme_is_missing_bearer(client, issuer):
    token = issuer.mint(["flow.read"])
    response = await client.get(READ, headers={"Authorization": "Basic Zmxvdy1kZXY6Zmxvdy1kZXYtc2VjcmV0"})
    assert_refused(response, 401, "R070", error=None)
    # a JWT sent under another scheme is still no bearer token
    assert_refused(await client.get(READ, headers={"Authorization": f"Token {token}"}), 401, "R070", token, error=None)


@pytest.mark.parametrize("garbage", ["abc", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30", "Bearer x"])
async def test_garbage_token(client, garbage):
    assert_refused(await client.get(READ, headers=bearer(garbage)), 401, "R071", garbage)


# --- the validity window ---------------------------------------------------------------------------

async def test_expired(client, issuer):
    now = int(time.time())
    token = issuer.mint(["flow.read"], iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    assert_refused(await client.get(READ, headers=bearer(token)), 401, "R072", token)


async def test_just_expired_within_leeway_passes(client, issuer):
    now = int(time.time())
    token = issuer.mint(["flow.read"], iat=now - 3600, nbf=now - 3600, exp=now - 10)  # leeway is 30 s
    assert (await client.get(READ, headers=bearer(token))).status_code == 200


async def test_not_yet_valid(client, issuer):
    token = issuer.mint(["flow.read"], nbf=int(time.time()) + 600)
    assert_refused(await client.get(READ, headers=bearer(token)), 401, "R072", token)


async def test_issued_in_the_future(client, issuer):
    now = int(time.time())
    token = issuer.mint(["flow.read"], iat=now + 600, nbf=None, exp=now + 3600)
    assert_refused(await client.get(READ, headers=bearer(token)), 401, "R072", token)


@pytest.mark.parametrize("claims", [{"exp": None}, {"exp": str(int(time.time()) + 600)}, {"iat": "yesterday"},
                                    {"sub": None, "azp": None, "client_id": None}])
async def test_missing_or_malformed_claims(client, issuer, claims):
    token = issuer.mint(["flow.read"], **claims)
    assert_refused(await client.get(READ, headers=bearer(token)), 401, "R071", token)


# --- issuer and audience ---------------------------------------------------------------------------

@pytest.mark.parametrize("iss", ["https://login.microsoftonline.com/another-tenant/v2.0", None])
async def test_wrong_or_missing_issuer(client, issuer, iss):
    token = issuer.mint(["flow.read"], iss=iss)
    assert_refused(await client.get(READ, headers=bearer(token)), 401, "R073", token)


@pytest.mark.parametrize("aud", ["api://not-flow", ["api://a", "api://b"], None])
async def test_wrong_or_missing_audience(client, issuer, aud):
    token = issuer.mint(["flow.read"], aud=aud)
    assert_refused(await client.get(READ, headers=bearer(token)), 401, "R074", token)


async def test_audience_among_several_passes(client, issuer):
    token = issuer.mint(["flow.read"], aud=["api://other", issuer.audience])
    assert (await client.get(READ, headers=bearer(token))).status_code == 200


# --- scopes ----------------------------------------------------------------------------------------

async def test_wrong_scope_is_forbidden(client, issuer):
    token = issuer.mint(["flow.read"])
    response = await client.post(WRITE, headers=bearer(token))
    assert_refused(response, 403, "R075", token, error="insufficient_scope")
    assert 'scope="flow.write"' in response.headers["www-authenticate"]
    assert_refused(await client.get(ADMIN, headers=bearer(issuer.mint(["flow.read", "flow.write"]))),
                   403, "R075", error="insufficient_scope")


@pytest.mark.parametrize("claims", [
    {"scp": "flow.read flow.write"},              # Entra ID delegated scopes
    {"scope": "flow.read flow.write"},            # generic OAuth2 / OIDC
    {"roles": ["flow.read", "flow.write"]},       # Entra ID application permissions (client credentials)
    {"scp": ["flow.read", "flow.write"]},         # some issuers (Okta) send scp as a list
    {"scp": "flow.read", "scope": "flow.write"},  # both delegated claims: their scopes together
], ids=["scp", "scope", "roles", "scp-list", "scp+scope"])
async def test_scopes_from_each_claim(client, issuer, claims):
    token = issuer.mint([], **claims)
    assert_refused(await client.get(ADMIN, headers=bearer(token)), 403, "R075", token, error="insufficient_scope")
    assert (await client.post(WRITE, headers=bearer(token))).status_code == 202
    response = await client.get(READ, headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"subject": "flow-dev", "client_id": "flow-dev", "scopes": ["flow.read", "flow.write"]}


@pytest.mark.parametrize("claims, granted", [
    # a delegated token (scp or scope) is judged by its delegated scopes only, whatever its roles say
    ({"scp": "flow.read", "roles": ["flow.admin", "flow.write"]}, ["flow.read"]),
    ({"scope": "flow.read", "roles": ["flow.admin"]}, ["flow.read"]),
    ({"scp": "", "roles": ["flow.admin", "flow.read"]}, []),
    # an app-only token (no scp nor scope) by its roles
    ({"roles": ["flow.admin", "flow.read"]}, ["flow.admin", "flow.read"]),
], ids=["scp+roles", "scope+roles", "empty-scp+roles", "roles-only"])
async def test_delegated_and_application_permissions_are_never_pooled(client, issuer, claims, granted):
    token = issuer.mint([], **claims)
    admin = await client.get(ADMIN, headers=bearer(token))
    if "flow.admin" in granted:
        assert admin.status_code == 200
    else:
        assert_refused(admin, 403, "R075", token, error="insufficient_scope")
    read = await client.get(READ, headers=bearer(token))
    if "flow.read" in granted:
        assert read.status_code == 200 and read.json()["scopes"] == granted
    else:
        assert_refused(read, 403, "R075", token, error="insufficient_scope")


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", "application/at+jwt", "AT+JWT", None])
async def test_access_token_types_pass(client, issuer, typ):
    token = issuer.mint(["flow.read"], headers={"typ": typ})
    assert (await client.get(READ, headers=bearer(token))).status_code == 200


@pytest.mark.parametrize("headers, claims", [
    ({"typ": "id_token"}, {}),
    ({"typ": "JWS"}, {}),
    ({"typ": "logout+jwt"}, {}),
    ({"typ": "dpop+jwt"}, {}),
    ({}, {"nonce": "n-0S6_WzA2Mj"}),                             # ID token markers (OIDC Core 2, 3.1.3.6)
    ({}, {"at_hash": "77QmUPtjPfzWtF2AnpK9RQ"}),
    ({}, {"c_hash": "LDktKdoQak3Pk0cnXxCltA"}),
    # an Entra token saying it is a user's, with no delegated scope: an ID token (its roles are the user's)
    ({}, {"scp": None, "scope": None, "idtyp": "user", "roles": ["flow.admin", "flow.read"]}),
    # an Entra token saying it is an app's, carrying delegated scopes: not what it claims to be
    ({}, {"idtyp": "app"}),
], ids=["typ-id_token", "typ-JWS", "typ-logout", "typ-dpop", "nonce", "at_hash", "c_hash", "idtyp-user-roles",
        "idtyp-app-scp"])
async def test_id_tokens_and_other_tokens_are_not_access_tokens(client, issuer, headers, claims):
    token = issuer.mint(["flow.read", "flow.admin"], headers=headers, **claims)
    assert_refused(await client.get(READ, headers=bearer(token)), 401, "R071", token)
    assert_refused(await client.get(ADMIN, headers=bearer(token)), 401, "R071", token)


async def test_an_entra_user_access_token_with_delegated_scopes_passes(client, issuer):
    token = issuer.mint(["flow.read"], idtyp="user", roles=["flow.admin"])
    assert (await client.get(READ, headers=bearer(token))).json()["scopes"] == ["flow.read"]
    assert_refused(await client.get(ADMIN, headers=bearer(token)), 403, "R075", token, error="insufficient_scope")


# --- signatures and algorithms ---------------------------------------------------------------------

async def test_bad_signature(client, issuer, stranger_key):
    token = issuer.mint(["flow.read"], signing_key=stranger_key)  # the issuer's kid, another key
    assert_refused(await client.get(READ, headers=bearer(token)), 401, "R071", token)


async def test_tampered_payload(client, issuer):
    header, _, signature = issuer.mint(["flow.read"]).split(".")
    forged = claims_of(issuer.mint(["flow.read"])) | {"scp": "flow.read flow.write flow.admin"}
    token = f"{header}.{b64url(json.dumps(forged).encode())}.{signature}"
    assert_refused(await client.get(ADMIN, headers=bearer(token)), 401, "R071", token)


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_alg_none(client, issuer, alg):
    token = handmade({"alg": alg, "kid": issuer.kid, "typ": "JWT"}, claims_of(issuer.mint(["flow.read"])))
    assert_refused(await client.get(READ, headers=bearer(token)), 401, "R071", token)


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hmac_signed_with_the_public_key(client, issuer, alg):
    """The classic confusion: the RSA public key (PEM, or its JWK text) used as an HMAC secret."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    pem = issuer.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    payload = claims_of(issuer.mint(["flow.read"]))
    for secret in (pem, json.dumps(issuer.jwks()["keys"][0]).encode()):
        token = handmade({"alg": alg, "kid": issuer.kid, "typ": "JWT"}, payload,
                         lambda signing_input: hmac.new(secret, signing_input, digest).digest())
        assert_refused(await client.get(READ, headers=bearer(token)), 401, "R071", token)


async def test_algorithm_must_fit_the_key(client, issuer):
    # ES256 is allowed, but the kid names an RSA key
    token = issuer.mint(["flow.read"], signing_key=ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    assert_refused(await client.get(READ, headers=bearer(token)), 401, "R071", token)
    # PS256 is allowed and fits RSA, but this JWK says alg RS256
    token = issuer.mint(["flow.read"], algorithm="PS256")
    assert_refused(await client.get(READ, headers=bearer(token)), 401, "R071", token)


async def test_no_kid(client, issuer):
    token = issuer.mint(["flow.read"], headers={"kid": None})
    assert_refused(await client.get(READ, headers=bearer(token)), 401, "R071", token)


# --- keys: discovery, cache, rotation, rate limit --------------------------------------------------

async def test_unknown_kid_refetches_the_jwks_once(stranger_key):
    with DevIssuer() as issuer:
        async with client_for(settings_for(issuer, jwks_refresh_min_seconds=1)) as client:
            for _ in range(3):
                assert (await client.get(READ, headers=bearer(issuer.mint(["flow.read"])))).status_code == 200
            assert issuer.requests == {"/.well-known/openid-configuration": 1, "/jwks": 1}  # cached

            await asyncio.sleep(1.1)  # past the rate limit: one refetch is now allowed
            token = issuer.mint(["flow.read"], signing_key=stranger_key, headers={"kid": "no-such-kid"})
            flood = await asyncio.gather(*(client.get(READ, headers=bearer(token)) for _ in range(20)))
            for _ in range(10):
                flood.append(await client.get(READ, headers=bearer(token)))
            for response in flood:
                assert_refused(response, 401, "R071", token)
            assert issuer.requests == {"/.well-known/openid-configuration": 1, "/jwks": 2}


async def test_key_rotation_is_picked_up():
    with DevIssuer() as issuer:
        async with client_for(settings_for(issuer, jwks_refresh_min_seconds=0)) as client:
            old = issuer.mint(["flow.read"])
            assert (await client.get(READ, headers=bearer(old))).status_code == 200
            issuer.rotate()
            assert (await client.get(READ, headers=bearer(issuer.mint(["flow.read"])))).status_code == 200
            assert (await client.get(READ, headers=bearer(old))).status_code == 200  # still published
            assert issuer.requests["/jwks"] == 2


async def test_expired_cache_is_refreshed_behind_the_requests():
    with DevIssuer() as issuer:
        async with client_for(settings_for(issuer, jwks_cache_seconds=0.5, jwks_refresh_min_seconds=0)) as client:
            token = issuer.mint(["flow.read"])
            assert (await client.get(READ, headers=bearer(token))).status_code == 200
            await asyncio.sleep(0.6)
            fresh = issuer.mint(["flow.read"])  # not one verified already: its key comes from the old cache
            assert (await client.get(READ, headers=bearer(fresh))).status_code == 200
            await wait_until_async(lambda: issuer.requests["/jwks"], "the JWKS refetched behind the requests", 2.5,
                                   holds=lambda fetches: fetches == 2, interval=0.05)
            assert issuer.requests == {"/.well-known/openid-configuration": 1, "/jwks": 2}


async def test_issuer_unreachable_is_unavailable(issuer):
    settings = settings_for(issuer, discovery_url=f"http://127.0.0.1:{free_port()}/.well-known/openid-configuration",
                            http_timeout_seconds=2)
    token = issuer.mint(["flow.read"])
    async with client_for(settings) as client:
        response = await client.get(READ, headers=bearer(token))
    assert response.status_code == 503 and response.json()["code"] == "R090"
    assert "www-authenticate" not in response.headers and token not in response.text


async def test_discovery_naming_another_issuer_is_refused(issuer):
    # the document at the discovery URL must name exactly the configured issuer (OIDC Discovery 4.3)
    async with client_for(settings_for(issuer, issuer="https://issuer.example")) as client:
        response = await client.get(READ, headers=bearer(issuer.mint(["flow.read"], iss="https://issuer.example")))
    assert response.status_code == 503 and response.json()["code"] == "R090"


# --- Entra ID shapes -------------------------------------------------------------------------------

async def test_entra_id_tokens():
    tenant, api_app, caller = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    entra = f"https://login.microsoftonline.com/{tenant}/v2.0"
    # Entra publishes its keys without `alg`; v2 tokens carry the API's client id as aud
    with DevIssuer(issuer=entra, audience=api_app, publish_alg=False) as issuer:
        settings = settings_for(issuer, audience=["api://flow", api_app])
        assert settings.issuer == entra
        common = {"azp": caller, "client_id": None, "tid": tenant, "ver": "2.0"}
        delegated = issuer.mint([], scp="flow.read", sub="AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
                                oid=str(uuid.uuid4()), **common)
        application = issuer.mint([], roles=["flow.write"], sub=str(uuid.uuid4()), idtyp="app", **common)
        v1_audience = issuer.mint([], scp="flow.read", aud="api://flow", **common)
        async with client_for(settings) as client:
            response = await client.get(READ, headers=bearer(delegated))
            assert response.status_code == 200, response.text
            assert response.json()["client_id"] == caller and response.json()["scopes"] == ["flow.read"]
            assert_refused(await client.post(WRITE, headers=bearer(delegated)), 403, "R075", delegated,
                           error="insufficient_scope")
            assert (await client.post(WRITE, headers=bearer(application))).status_code == 202
            assert_refused(await client.get(READ, headers=bearer(application)), 403, "R075", application,
                           error="insufficient_scope")
            assert (await client.get(READ, headers=bearer(v1_audience))).status_code == 200
            # no `alg` in the JWK: any allowed algorithm that fits an RSA key will do
            ps256 = issuer.mint([], scp="flow.read", algorithm="PS256", **common)
            assert (await client.get(READ, headers=bearer(ps256))).status_code == 200


# --- the dev issuer's client-credentials grant -----------------------------------------------------

async def test_client_credentials_end_to_end(issuer):
    async with httpx.AsyncClient(timeout=10) as http, client_for(settings_for(issuer)) as client:
        discovery = (await http.get(issuer.discovery_url)).json()
        assert discovery["token_endpoint"] == issuer.token_endpoint and discovery["issuer"] == issuer.issuer

        grant = await http.post(discovery["token_endpoint"], data={
            "grant_type": "client_credentials", "client_id": "flow-dev", "client_secret": "flow-dev-secret",
            "scope": "flow.write flow.read"})
        assert grant.status_code == 200 and grant.headers["cache-control"] == "no-store"
        body = grant.json()
        assert body["token_type"] == "Bearer" and body["scope"] == "flow.write flow.read" and body["expires_in"] > 0
        token = body["access_token"]
        assert (await client.post(WRITE, headers=bearer(token))).status_code == 202
        assert (await client.get(READ, headers=bearer(token))).json()["scopes"] == ["flow.read", "flow.write"]
        assert_refused(await client.get(ADMIN, headers=bearer(token)), 403, "R075", token, error="insufficient_scope")

        # client_secret_basic, no scope asked: every scope the client may have
        grant = await http.post(issuer.token_endpoint, data={"grant_type": "client_credentials"},
                                auth=("flow-dev", "flow-dev-secret"))
        assert (await client.get(ADMIN, headers=bearer(grant.json()["access_token"]))).status_code == 200


@pytest.mark.parametrize("form, status, error", [
    ({"grant_type": "client_credentials", "client_id": "flow-dev", "client_secret": "wrong"}, 401, "invalid_client"),
    ({"grant_type": "client_credentials", "client_id": "someone", "client_secret": "flow-dev-secret"},
     401, "invalid_client"),
    ({"grant_type": "password", "client_id": "flow-dev", "client_secret": "flow-dev-secret"},
     400, "unsupported_grant_type"),
    ({"grant_type": "client_credentials", "client_id": "flow-dev", "client_secret": "flow-dev-secret",
      "scope": "flow.read flow.root"}, 400, "invalid_scope"),
])
async def test_token_endpoint_refusals(issuer, form, status, error):
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(issuer.token_endpoint, data=form)
    assert response.status_code == status and response.json()["error"] == error
    assert "access_token" not in response.json() and "flow-dev-secret" not in response.text


async def test_issuer_as_a_process():
    port = free_port()
    command = [sys.executable, "-m", "tools.devstack.issuer", "--port", str(port), "--audience", "api://flow"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert line.startswith(f"dev issuer ready: http://127.0.0.1:{port}") and "secret" not in line
        async with httpx.AsyncClient(timeout=10) as http:
            grant = await http.post(f"http://127.0.0.1:{port}/token", data={
                "grant_type": "client_credentials", "client_id": "flow-dev", "client_secret": "flow-dev-secret",
                "scope": "flow.write"})
        token = grant.json()["access_token"]
        settings = AuthSettings(enabled=True, issuer=f"http://127.0.0.1:{port}", audience="api://flow")
        async with client_for(settings) as client:
            assert (await client.post(WRITE, headers=bearer(token))).status_code == 202
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and output.strip() == "dev issuer stopped"


# --- settings --------------------------------------------------------------------------------------

async def test_disabled_lets_everything_through():
    async with client_for(AuthSettings(enabled=False)) as client:
        response = await client.get(READ)
        assert response.status_code == 200 and response.json()["subject"] == "anonymous"
        assert (await client.post(WRITE)).status_code == 202


@pytest.mark.parametrize("overrides", [
    {"algorithms": ["RS256", "HS256"]}, {"algorithms": ["none"]}, {"algorithms": []},
    {"issuer": None}, {"audience": []},
    {"issuer": "http://issuer.example"},                     # keys in clear over the network
    {"discovery_url": "http://10.0.0.1/.well-known/openid-configuration"},
])
def test_settings_refused(overrides):
    with pytest.raises(ValidationError):
        AuthSettings(**{"enabled": True, "issuer": "https://issuer.example", "audience": "api://flow", **overrides})


def test_settings_from_the_environment(monkeypatch):
    tenant = str(uuid.uuid4())
    monkeypatch.setenv("FLOW_AUTH_ENABLED", "true")
    monkeypatch.setenv("FLOW_AUTH_ISSUER", f"https://login.microsoftonline.com/{tenant}/v2.0")
    monkeypatch.setenv("FLOW_AUTH_AUDIENCE", "api://flow, 00000000-0000-0000-0000-000000000001")
    monkeypatch.setenv("FLOW_AUTH_ALGORITHMS", "RS256 PS256")
    monkeypatch.setenv("FLOW_AUTH_JWKS_CACHE_SECONDS", "600")
    settings = AuthSettings()
    assert settings.audience == ("api://flow", "00000000-0000-0000-0000-000000000001")
    assert settings.algorithms == ("RS256", "PS256") and settings.jwks_cache_seconds == 600
    assert settings.discovery_endpoint == (f"https://login.microsoftonline.com/{tenant}/v2.0"
                                           "/.well-known/openid-configuration")
