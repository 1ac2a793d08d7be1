from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from gateway import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics_view, name="metrics"),
    path("api/v1/", include("gateway.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
]

# Errors under /api/ outside the DRF views are problem documents too.
handler400 = "gateway.api.problems.bad_request"
handler403 = "gateway.api.problems.permission_denied"
handler404 = "gateway.api.problems.not_found"
handler500 = "gateway.api.problems.server_error"
