"""Calls per API key (GRPC_RATE_PER_KEY) and per client address (GRPC_RATE_PER_ADDRESS) on the
gRPC server: past the rate a call is answered RESOURCE_EXHAUSTED at once, with when to try again
(RetryInfo and gRPC's retry pushback).

A token bucket per key (an API key by its prefix, an OAuth token by its digest) for calls that
carry one, per address for calls that carry none, in the server process: it holds the rate's whole
budget and refills continuously. Not counted: health checks, the service's own tokens
(GRPC_AUTH_TOKENS, GRPC_WRITE_TOKENS) and the credentials the web tier signs for its callers: the
web tier is one address for all of its users, who are counted by its own limits.
"""
import hashlib
import inspect
import math
import re
import time

import grpc

from grpc_api.errors import retry_later
from grpc_api.interceptors import HEALTH_METHOD_PREFIX
from accounts.access import is_one_of, is_user_credential
from accounts.keys import prefix_of
from grpc_api.permissions import bearer_token

_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"(\d+)/(second|minute|hour|day)")
# Buckets idle past this many periods are dropped when the table grows: memory stays bounded.
_ADDRESSES_KEPT = 10_000


def parse_rate(text: str) -> tuple[int, float] | None:
    """("N/second|minute|hour|day") → (calls, seconds); "" → None. ValueError if malformed."""
    if not text:
        return None
    found = _RATE.fullmatch(text.strip())
    if found is None or int(found[1]) < 1:
        raise ValueError(f"{text!r} is not a rate like 600/minute")
    return int(found[1]), float(_PERIODS[found[2]])


def address_of(peer: str) -> str:
    """The client's address in a gRPC peer string ("ipv4:127.0.0.1:5000", "ipv6:[::1]:5000")."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1:rest.index("]")]
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return peer


class Buckets:
    def __init__(self, calls: int, seconds: float, clock=time.monotonic):
        self.capacity = float(calls)
        self.refill = calls / seconds  # tokens a second
        self.seconds = seconds
        self.clock = clock
        self.state: dict[str, tuple[float, float]] = {}  # address → (tokens, when)

    def take(self, address: str) -> float:
        """0 if a call from `address` may go now (and counts it), else seconds until one may."""
        now = self.clock()
        tokens, when = self.state.get(address, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - when) * self.refill)
        if tokens >= 1:
            self.state[address] = (tokens - 1, now)
            if len(self.state) > _ADDRESSES_KEPT:
                self._forget_idle(now)
            return 0.0
        self.state[address] = (tokens, now)
        return (1 - tokens) / self.refill

    def _forget_idle(self, now: float) -> None:
        for address in [a for a, (_, when) in self.state.items() if now - when > self.seconds]:
            del self.state[address]


class RateLimitInterceptor(grpc.aio.ServerInterceptor):
    """The outermost interceptor: counts each call before anything else is done for it.
    `per_key` and `per_address` are (calls, seconds), or None for no limit."""

    def __init__(self, *, per_key: tuple[int, float] | None, per_address: tuple[int, float] | None, exempt_tokens: list[str]):
        self.per_key = Buckets(*per_key) if per_key else None
        self.per_address = Buckets(*per_address) if per_address else None
        self.exempt_tokens = exempt_tokens

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(HEALTH_METHOD_PREFIX):
            return handler
        credential = bearer_token(handler_call_details.invocation_metadata)
        if credential and (is_one_of(credential, self.exempt_tokens) or is_user_credential(credential)):
            return handler
        if credential:
            if self.per_key is None:
                return handler
            counted = (self.per_key, _key_name(credential), "this key")
        else:
            if self.per_address is None:
                return handler
            counted = (self.per_address, None, "this address")
        if handler.unary_unary:
            return handler._replace(unary_unary=self._unary(handler.unary_unary, counted))
        if handler.unary_stream:
            return handler._replace(unary_stream=self._stream(handler.unary_stream, counted))
        return handler

    async def _refuse_if_over(self, context, counted) -> None:
        buckets, name, whose = counted
        wait = buckets.take(name or address_of(context.peer()))
        if wait:
            status = retry_later(f"too many calls from {whose}; try again in {math.ceil(wait)} s", wait)
            await context.abort(status.code, status.details, status.trailing_metadata)

    def _unary(self, behavior, counted):
        async def unary(request, context):
            await self._refuse_if_over(context, counted)
            return await behavior(request, context)

        return unary

    def _stream(self, behavior, counted):
        async def stream(request, context):
            await self._refuse_if_over(context, counted)
            if inspect.isasyncgenfunction(behavior):
                async for message in behavior(request, context):
                    yield message
            else:
                await behavior(request, context)

        return stream


def _key_name(credential: str) -> str:
    """What a key's bucket is called: an API key's prefix, another credential's digest (a client
    cannot spread its calls over buckets by varying a key's secret part: an unknown key is refused
    anyway, after one call)."""
    prefix = prefix_of(credential)
    return f"key:{prefix}" if prefix else hashlib.sha256(credential.encode()).hexdigest()
