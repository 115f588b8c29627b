"""Every API endpoint refuses a caller without a good token, on the running services (the token
checks themselves are unit-tested in test_auth.py)."""

import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

ENDPOINTS = [("ingest_url", "POST", "/v1/transactions", "flow.write"),
             ("ingest_url", "POST", "/v1/transactions/batch", "flow.write"),
             ("ingest_url", "POST", "/v1/events", "flow.admin"),
             ("ingest_url", "PATCH", "/v1/events/1", "flow.admin"),
             ("query_url", "GET", "/v1/transactions/00000000-0000-0000-0000-000000000000", "flow.read"),
             ("query_url", "GET", "/v1/accounts/0001/000000001/statement", "flow.read"),
             ("query_url", "GET", "/v1/accounts/0001/000000001/balances", "flow.read"),
             ("query_url", "GET", "/v1/accounts/0001/000000001/balance", "flow.read"),
             ("query_url", "GET", "/v1/events", "flow.read")]


def _bad_tokens(issuer, scope: str) -> dict[str, tuple[str | None, int, str]]:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    unsigned = jwt.encode({"iss": issuer.issuer, "aud": issuer.audience, "sub": "x", "exp": now + 60, "scp": scope},
                          key="", algorithm="none")
    return {
        "missing": (None, 401, "R070"),
        "expired": (issuer.mint([scope], exp=now - 3600, iat=now - 7200, nbf=now - 7200), 401, "R072"),
        "wrong issuer": (issuer.mint([scope], iss="https://login.microsoftonline.com/evil/v2.0"), 401, "R073"),
        "wrong audience": (issuer.mint([scope], aud="api://someone-else"), 401, "R074"),
        "wrong scope": (issuer.mint(["flow.nothing"]), 403, "R075"),
        "bad signature": (issuer.mint([scope], signing_key=other_key), 401, "R071"),
        "alg none": (unsigned, 401, "R071"),
    }


@pytest.mark.parametrize("case", ["missing", "expired", "wrong issuer", "wrong audience", "wrong scope",
                                  "bad signature", "alg none"])
@pytest.mark.parametrize(("service", "method", "path", "scope"), ENDPOINTS)
async def test_every_endpoint_refuses_a_bad_token(request, stack, service, method, path, scope, case):
    token, status, code = _bad_tokens(stack.issuer, scope)[case]
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.request(method, request.getfixturevalue(service) + path, json={}, headers=headers)
    assert (response.status_code, response.json()["code"]) == (status, code)
    if token:
        assert token not in response.text and token not in str(response.headers)
