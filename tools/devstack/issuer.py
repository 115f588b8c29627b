"""A development OIDC issuer for the local stack and the tests: OAuth2 client credentials only.

It makes an RSA key at start (in memory, never written), serves OIDC discovery, the JWKS and a token
endpoint on 127.0.0.1, and mints RS256 access tokens shaped like Entra ID's (`scp`, plus the generic
`scope`). Tests use it in-process and mint any token they like:

    with DevIssuer() as issuer:
        token = issuer.mint(["flow.read"], exp=0)          # a claim set to None is left out

The stack runs it as a process:

    python -m tools.devstack.issuer --port 8004 --audience api://flow
    curl -s -X POST http://127.0.0.1:8004/token -d grant_type=client_credentials \\
         -d client_id=flow-dev -d client_secret=flow-dev-secret -d scope=flow.write

The client secret comes from FLOW_DEV_ISSUER_CLIENT_SECRET (default flow-dev-secret), not from the
command line, where `ps` would show it. Not for production: anyone with the secret gets any scope.
"""

import argparse
import base64
import hmac
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

__all__ = ["DEFAULT_SCOPES", "DevIssuer", "main"]

DEFAULT_SCOPES = ("flow.read", "flow.write", "flow.admin")
_MAX_FORM_BYTES = 16_384


class _Key:
    def __init__(self) -> None:
        self.kid = uuid.uuid4().hex[:16]
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self, with_alg: bool) -> dict:
        jwk = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        jwk.pop("key_ops", None)
        jwk.update({"kid": self.kid, "use": "sig"}, **({"alg": "RS256"} if with_alg else {}))
        return jwk


class DevIssuer:
    """An OIDC issuer on 127.0.0.1:`port` (0 picks a free one), served from a background thread.

    `issuer` overrides the `iss` name (e.g. an Entra-style URL) while discovery stays at `.url`;
    `publish_alg=False` leaves `alg` out of the JWKS, as Entra ID does. `requests` counts the
    requests per path, so tests can see how often a verifier comes back for keys.
    """

    def __init__(self, port: int = 0, *, audience: str = "api://flow", issuer: str | None = None,
                 client_id: str = "flow-dev", client_secret: str = "flow-dev-secret",
                 scopes: Iterable[str] = DEFAULT_SCOPES, token_lifetime: int = 3600, publish_alg: bool = True) -> None:
        self.port = port
        self.audience = audience
        self.client_id = client_id
        self._client_secret = client_secret
        self.scopes = tuple(scopes)
        self.token_lifetime = token_lifetime
        self.publish_alg = publish_alg
        self._issuer = issuer
        self._keys = (_Key(),)  # newest last; replaced whole, so server threads read it without a lock
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._count_lock = threading.Lock()
        self.requests: Counter[str] = Counter()

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "DevIssuer":
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self._server.daemon_threads = True
        self._server.issuer = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="dev-issuer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def __enter__(self) -> "DevIssuer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what clients see ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return self._issuer or self.url

    @property
    def discovery_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    @property
    def token_endpoint(self) -> str:
        return f"{self.url}/token"

    @property
    def kid(self) -> str:
        return self._keys[-1].kid

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self._keys[-1].private.public_key()

    def discovery(self) -> dict:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.url}/jwks",
            "token_endpoint": self.token_endpoint,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "scopes_supported": list(self.scopes),
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def jwks(self) -> dict:
        return {"keys": [key.jwk(self.publish_alg) for key in self._keys]}

    def rotate(self) -> str:
        """A new signing key; the old one stays published, as issuers do during a rotation."""
        self._keys = (*self._keys, _Key())
        return self.kid

    # --- tokens ----------------------------------------------------------------------------------

    def mint(self, scopes: Iterable[str] = (), *, signing_key: Any = None, algorithm: str = "RS256",
             headers: dict | None = None, **claims: Any) -> str:
        """A signed access token for `scopes` (as `scp` and `scope`). Keyword claims override the
        defaults, None removes one; `signing_key`, `algorithm` and `headers` make the odd token
        (another key, another alg, another or no kid)."""
        now = int(time.time())
        scope = " ".join(scopes)
        payload = {
            "iss": self.issuer, "aud": self.audience, "sub": self.client_id, "azp": self.client_id,
            "client_id": self.client_id, "iat": now, "nbf": now, "exp": now + self.token_lifetime,
            "jti": str(uuid.uuid4()), **({"scp": scope, "scope": scope} if scope else {}),
        }
        payload = {k: v for k, v in {**payload, **claims}.items() if v is not None}
        header = {k: v for k, v in {"kid": self.kid, "typ": "JWT", **(headers or {})}.items() if v is not None}
        return jwt.encode(payload, signing_key or self._keys[-1].private, algorithm=algorithm, headers=header)

    def _grant(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict]:
        """RFC 6749 section 4.4 client credentials; the client authenticates by form or Basic."""
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization[:6].lower() == "basic ":
            try:
                pair = base64.b64decode(authorization[6:], validate=True).decode()
                client_id, secret = (unquote_plus(part) for part in pair.split(":", 1))
            except ValueError:
                return 401, {"error": "invalid_client"}
        if not (client_id == self.client_id and secret is not None
                and hmac.compare_digest(secret.encode(), self._client_secret.encode())):
            return 401, {"error": "invalid_client", "error_description": "unknown client or wrong secret"}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "only client_credentials"}
        wanted = form.get("scope", "").split() or list(self.scopes)
        unknown = sorted(set(wanted) - set(self.scopes))
        if unknown:
            return 400, {"error": "invalid_scope", "error_description": f"unknown scope: {' '.join(unknown)}"}
        return 200, {"access_token": self.mint(wanted), "token_type": "Bearer",
                     "expires_in": self.token_lifetime, "scope": " ".join(wanted)}


class _Handler(BaseHTTPRequestHandler):
    server_version = "flow-dev-issuer"

    @property
    def issuer(self) -> DevIssuer:
        return self.server.issuer

    def do_GET(self) -> None:
        path = self._count()
        if path == "/.well-known/openid-configuration":
            self._json(200, self.issuer.discovery())
        elif path == "/jwks":
            self._json(200, self.issuer.jwks())
        else:
            self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        if self._count() != "/token":
            return self._json(404, {"error": "not_found"})
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_FORM_BYTES:
            return self._json(400, {"error": "invalid_request"})
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode(errors="replace")).items()}
        status, body = self.issuer._grant(form, self.headers.get("Authorization"))
        self._json(status, body, {"WWW-Authenticate": 'Basic realm="flow-dev-issuer"'} if status == 401 else {})

    def _count(self) -> str:
        path = self.path.split("?", 1)[0]
        with self.issuer._count_lock:
            self.issuer.requests[path] += 1
        return path

    def _json(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")  # tokens must not be cached (RFC 6749 section 5.1)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: one line per request adds nothing, and the stack's logs stay readable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.devstack.issuer", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8004, help="port on 127.0.0.1 (0: any free one); default 8004")
    parser.add_argument("--audience", default="api://flow", help="the tokens' aud; default api://flow")
    parser.add_argument("--issuer", help="the tokens' iss; default the issuer's own URL")
    parser.add_argument("--client-id", default="flow-dev", help="the one client allowed; default flow-dev")
    parser.add_argument("--scopes", default=" ".join(DEFAULT_SCOPES), help="scopes it may grant, space-separated")
    parser.add_argument("--token-lifetime", type=int, default=3600, help="seconds; default 3600")
    args = parser.parse_args(argv)
    secret = os.environ.get("FLOW_DEV_ISSUER_CLIENT_SECRET") or "flow-dev-secret"
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        issuer = DevIssuer(args.port, audience=args.audience, issuer=args.issuer, client_id=args.client_id,
                           client_secret=secret, scopes=args.scopes.split(), token_lifetime=args.token_lifetime).start()
    except OSError as exc:
        print(f"dev issuer: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"dev issuer ready: {issuer.url} (iss {issuer.issuer}, aud {issuer.audience}, client {issuer.client_id}, "
          f"scopes {' '.join(issuer.scopes)}); token endpoint {issuer.token_endpoint}", flush=True)
    while not stopping.wait(1):
        pass
    issuer.stop()
    print("dev issuer stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
