"""The ASGI gate in front of the app: per-client rate limit, then the response cache.

A plain ASGI middleware (no per-request task or body streaming wrapper), because a cached answer
is the common case and should cost little more than writing it out. ``/health`` and
``/metrics`` pass untouched, and so do the public page's static files, ``/docs`` and
``/openapi.json``; every ``/api/`` request spends a token of the client's bucket (429 with
``Retry-After`` and a problem body when empty), and ``/api/`` answers are cached per path + query.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from urllib.parse import parse_qsl

import orjson
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opendata import metrics
from opendata.cache import CachedAnswer, ResponseCache
from opendata.limiter import RateLimiter

__all__ = ["EXEMPT", "Gate", "client_ip", "endpoint_label", "problem_body"]

logger = logging.getLogger(__name__)
EXEMPT = frozenset({"/health", "/metrics"})


def client_ip(peer: str | None, forwarded_for: str | None, trusted: frozenset[str]) -> str:
    """The client's address: the peer, or (behind a trusted proxy) the right-most untrusted
    address of ``X-Forwarded-For`` (pure)."""
    ip = peer or "unknown"
    if ip not in trusted or not forwarded_for:
        return ip
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return ip
        if hop not in trusted:
            return hop
    return ip


def endpoint_label(path: str) -> str:
    """A low-cardinality label for a path (station ids folded)."""
    if path.startswith("/api/v1/stations/") and path.endswith("/history"):
        return "/api/v1/stations/{id}/history"
    return path if path.startswith("/api/") else "other"


def problem_body(status: int, title: str, detail: str) -> bytes:
    """An RFC 9457 problem document."""
    return orjson.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})


class Gate:
    """Rate limit and cache around an ASGI app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        cache: ResponseCache,
        trusted: frozenset[str],
        limit_text: str,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.cache = cache
        self.trusted = trusted
        self.limit_text = limit_text
        self.max_age = f"public, max-age={int(cache.ttl_s)}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path in EXEMPT or not path.startswith("/api/"):
            # The page's own files (about a dozen per visit), /docs and /openapi.json are static
            # and cheap: limiting them would answer a second visit's HTML with a JSON 429.
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        peer = scope.get("client")
        ip = client_ip(peer[0] if peer else None, headers.get("x-forwarded-for"), self.trusted)
        query = scope.get("query_string", b"").decode("latin-1")
        pairs = parse_qsl(query, keep_blank_values=True)
        label, fmt = endpoint_label(path), dict(pairs).get("format", "json")
        decision = self.limiter.check(ip, time.monotonic())
        if not decision.allowed:
            metrics.LIMITED.inc()
            metrics.REQUESTS.labels(label, fmt, "429").inc()
            logger.info("rate limited client=%s path=%s retry_after_s=%d", ip, path, decision.retry_after_s)
            detail = f"{self.limit_text}; retry after {decision.retry_after_s} s"
            body = problem_body(429, "Too Many Requests", detail)
            await _send(
                send,
                CachedAnswer(429, body, "application/json"),
                [(b"retry-after", str(decision.retry_after_s).encode())],
            )
            return
        key = self.cache.key(path, pairs)
        answer = self.cache.get(key)
        if answer is not None:
            metrics.CACHE.labels("hit").inc()
            extra = [(b"x-cache", b"hit")]
        else:
            metrics.CACHE.labels("miss").inc()
            answer = await self._render(scope, receive)
            self.cache.put(key, answer)
            extra = [(b"x-cache", b"miss")]
        if answer.status == 200:
            extra.append((b"cache-control", self.max_age))
        await _send(send, answer, extra)
        metrics.REQUESTS.labels(label, fmt, str(answer.status)).inc()
        metrics.SECONDS.labels(label).observe(time.perf_counter() - started)

    async def _render(self, scope: Scope, receive: Receive) -> CachedAnswer:
        """Run the app and keep its whole answer."""
        status = 500
        media_type = "application/json"
        kept: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, media_type
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", []):
                    lname = name.decode("latin-1").lower()
                    if lname == "content-type":
                        media_type = value.decode("latin-1")
                    elif lname not in ("content-length", "date", "server"):
                        kept.append((lname, value.decode("latin-1")))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        return CachedAnswer(status, b"".join(chunks), media_type, tuple(kept))


async def _send(send: Send, answer: CachedAnswer, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [
        (b"content-type", answer.media_type.encode("latin-1")),
        (b"content-length", str(len(answer.body)).encode()),
        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers),
        *extra,
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
