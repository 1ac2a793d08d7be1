"""Pages and probes outside the API: the dashboard, the page of a locked-out sign-in, /healthz and
/readyz."""
import logging
import math
from datetime import timedelta

from axes.helpers import get_client_username, get_cool_off
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from gateway import client
from gateway.api.problems import problem_response
from meterproject import metrics

logger = logging.getLogger(__name__)

# Placeholder the dashboard replaces with a meter name in the API's URL templates.
METER_PLACEHOLDER = "__meter__"


@require_safe
def dashboard(request):
    urls = {
        "meters": reverse("api:meter-list"),
        **{
            name: reverse(f"api:meter-{name}", kwargs={"meter": METER_PLACEHOLDER})
            for name in ("readings", "aggregates", "completeness", "changes")
        },
    }
    config = {"api": urls, "meterPlaceholder": METER_PLACEHOLDER, "signedIn": request.user.is_authenticated}
    return render(request, "gateway/dashboard.html", {"dashboard_config": config})


def locked_out(request, credentials=None):
    """django-axes' answer to a sign-in it refuses (AXES_LOCKOUT_CALLABLE): a page in the
    dashboard's look that says for how long, 429 with Retry-After."""
    cool_off = get_cool_off(request)
    context = {
        "username": get_client_username(request, credentials) or "",
        "wait": duration_text(cool_off) if cool_off else "",
    }
    response = render(request, "gateway/locked_out.html", context, status=429)
    if cool_off:
        response["Retry-After"] = str(math.ceil(cool_off.total_seconds()))
    return response


def duration_text(delta: timedelta) -> str:
    """"15 minutes", "1 hour", "90 seconds": the largest unit that states the duration exactly."""
    seconds = math.ceil(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}" if count == 1 else f"{count} {unit}s"
    return "1 second" if seconds == 1 else f"{seconds} seconds"


@never_cache
@require_safe
def healthz(request):
    """The process is alive and answers requests; nothing else is checked."""
    return JsonResponse({"status": "ok"})


def _database_check() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        # Where the database lives (host, port) goes to the log, not to anonymous clients.
        logger.warning("readiness: the relational store is unavailable: %s", exc)
        return {"ok": False, "error": "the relational store is unavailable"}
    return {"ok": True}


def _grpc_check() -> dict:
    try:
        status = client.service_status()
    except client.RpcFailed as exc:
        return {"ok": False, "error": exc.detail}
    return {"ok": status == "SERVING", "status": status}


@never_cache
@require_safe
def readyz(request):
    """Ready to serve: the database answers and the gRPC service reports SERVING. 503 otherwise."""
    checks = {"database": _database_check(), "grpc": _grpc_check()}
    ready = all(check["ok"] for check in checks.values())
    return JsonResponse({"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503)


@never_cache
@require_safe
def metrics_view(request):
    """Prometheus metrics of this web server; open to anyone only with METRICS_PUBLIC."""
    if not metrics.may_read(request, public=settings.METRICS_PUBLIC, token=settings.METRICS_TOKEN):
        return problem_response(
            401, "metrics need a staff user or the metrics token (Authorization: Bearer ...)",
            instance=request.path, headers={"WWW-Authenticate": "Bearer"},
        )
    return HttpResponse(metrics.exposition(), content_type=metrics.CONTENT_TYPE)
