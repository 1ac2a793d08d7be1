"""Calls per client address on the gRPC server (GRPC_RATE_PER_ADDRESS): past the rate a call is
answered RESOURCE_EXHAUSTED at once, with when to try again (RetryInfo and gRPC's retry pushback).

A token bucket per address, in the server process: it holds the rate's whole budget and refills
continuously. Callers with one of the service's own tokens (GRPC_AUTH_TOKENS, GRPC_WRITE_TOKENS:
the gateway, other services) and health checks are not counted: the gateway is one address for
all of its users, who are counted by the web server's own limits.
"""
import inspect
import math
import re
import time

import grpc

from grpc_api.errors import retry_later
from grpc_api.interceptors import HEALTH_METHOD_PREFIX
from grpc_api.permissions import bearer_token, is_one_of

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
    """The outermost interceptor: counts each call before anything else is done for it."""

    def __init__(self, calls: int, seconds: float, exempt_tokens: list[str]):
        self.buckets = Buckets(calls, seconds)
        self.exempt_tokens = exempt_tokens

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if (
            handler is None
            or handler_call_details.method.startswith(HEALTH_METHOD_PREFIX)
            or (self.exempt_tokens and is_one_of(bearer_token(handler_call_details.invocation_metadata), self.exempt_tokens))
        ):
            return handler
        if handler.unary_unary:
            return handler._replace(unary_unary=self._unary(handler.unary_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=self._stream(handler.unary_stream))
        return handler

    async def _refuse_if_over(self, context) -> None:
        wait = self.buckets.take(address_of(context.peer()))
        if wait:
            status = retry_later(f"too many calls from this address; try again in {math.ceil(wait)} s", wait)
            await context.abort(status.code, status.details, status.trailing_metadata)

    def _unary(self, behavior):
        async def unary(request, context):
            await self._refuse_if_over(context)
            return await behavior(request, context)

        return unary

    def _stream(self, behavior):
        async def stream(request, context):
            await self._refuse_if_over(context)
            if inspect.isasyncgenfunction(behavior):
                async for message in behavior(request, context):
                    yield message
            else:
                await behavior(request, context)

        return stream
