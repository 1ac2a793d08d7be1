"""Content-Security-Policy on every response. The dashboard and its sign-in pages load only their
own scripts and styles, so their policy is strict; admin, the browsable API and Swagger UI carry
inline scripts of their frameworks, so theirs allows inline code but still nothing from another
origin."""

STRICT = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
FRAMEWORK_PAGES = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
# The project's own pages (URL names), which hold no inline code.
OWN_PAGES = {"dashboard", "login", "logout"}


def strict_policy(*, form_action=()) -> str:
    """The strict policy, its forms also allowed to post (and be redirected) to `form_action`
    origins: the OAuth consent page, whose answer redirects to the app."""
    return STRICT.replace("form-action 'self'", " ".join(["form-action 'self'", *form_action]))


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            html = response.get("Content-Type", "").startswith("text/html")
            match = getattr(request, "resolver_match", None)
            own = match is not None and match.view_name in OWN_PAGES
            response["Content-Security-Policy"] = FRAMEWORK_PAGES if html and not own else STRICT
        return response
