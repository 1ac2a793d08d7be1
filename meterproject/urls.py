from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from oauth2_provider import views as oauth_views

from accounts.views import ConsentView
from gateway import views

# OAuth 2 for third-party apps (django-oauth-toolkit): the consent page, tokens, revocation and
# introspection, under the toolkit's own names; apps are registered in admin.
oauth_urls = ([
    path("authorize/", ConsentView.as_view(), name="authorize"),
    path("token/", oauth_views.TokenView.as_view(), name="token"),
    path("revoke_token/", oauth_views.RevokeTokenView.as_view(), name="revoke-token"),
    path("introspect/", oauth_views.IntrospectTokenView.as_view(), name="introspect"),
], "oauth2_provider")

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics_view, name="metrics"),
    path("api/v1/", include("gateway.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
    # The dashboard's sign-in (django-axes locks it as it locks admin's) and sign-out (POST only).
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="gateway/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("o/", include(oauth_urls)),
]

# Errors under /api/ outside the DRF views are problem documents too.
handler400 = "gateway.api.problems.bad_request"
handler403 = "gateway.api.problems.permission_denied"
handler404 = "gateway.api.problems.not_found"
handler500 = "gateway.api.problems.server_error"
