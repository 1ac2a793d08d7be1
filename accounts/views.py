"""The consent page of OAuth 2 (/o/authorize/): django-oauth-toolkit's view, told which meters the
signed-in user would open to the app."""
from urllib.parse import urlsplit

from oauth2_provider.views import AuthorizationView

from meterproject.middleware import strict_policy
from readings.models import Meter


class ConsentView(AuthorizationView):
    """Asks the signed-in user whether the app may have the scopes it asks for, naming the meters
    their accounts own (staff: every meter)."""

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        user = self.request.user
        context["every_meter"] = user.is_staff
        context["meters"] = [] if user.is_staff else Meter.objects.filter(account__members=user).order_by("name")
        return context

    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        redirect_uri = getattr(self, "oauth2_data", {}).get("redirect_uri")
        if response.status_code == 200 and redirect_uri:
            # Approving posts the form here, and the answer redirects to the app: browsers hold
            # that redirect to the page's form-action too.
            parts = urlsplit(redirect_uri)
            response["Content-Security-Policy"] = strict_policy(form_action=[f"{parts.scheme}://{parts.netloc}"])
        return response
