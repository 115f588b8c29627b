"""A request body size limit. The body is read (up to the limit) before the app sees it, so an
oversized or lying request is refused with 413 R015 and never reaches a handler."""

import json

from flow_rules.codes import Code

__all__ = ["BodySizeLimit"]


class BodySizeLimit:
    """ASGI middleware: bodies over `max_bytes` (or `per_path[path]`) get 413 with R015."""

    def __init__(self, app, max_bytes: int, per_path: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = per_path or {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = self.per_path.get(scope["path"], self.max_bytes)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            return await _refuse(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return await _refuse(send)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: disconnect notices

        await self.app(scope, replay, send)


async def _refuse(send) -> None:
    body = json.dumps({"code": Code.BODY_TOO_LARGE.value, "message": Code.BODY_TOO_LARGE.message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
