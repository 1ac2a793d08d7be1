"""Settings for meterusage, read from the environment (see .env.sample and docs/configuration.md)
and a .env file."""
from datetime import timedelta
from pathlib import Path

import dj_database_url
import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


class Env(environ.Env):
    """django-environ's reader, held to this project's rules: an empty value is unset (as in
    .env.sample and in compose), a value is taken as written (no `$OTHER` references: a `$` in a
    password stays a `$`), booleans are 1/true/yes/on, numbers are strict."""

    BOOLEAN_TRUE_STRINGS = ("1", "true", "yes", "on")

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        value = self.ENVIRON.get(var, "")
        if value == "":
            if default is self.NOTSET:
                raise ImproperlyConfigured(f"Set the {var} environment variable")
            return default
        return self.parse_value(value, cast)

    @classmethod
    def parse_value(cls, value, cast):
        if cast is bool:
            return value.strip().lower() in cls.BOOLEAN_TRUE_STRINGS
        if cast is float:
            # django-environ's own float drops every other character ("1e3" would be 13.0).
            return float(value)
        return super().parse_value(value, cast)

    def list(self, var, cast=None, default=environ.Env.NOTSET):
        """Comma-separated items, the blanks around them dropped."""
        return [item.strip() for item in super().list(var, cast, default) if item.strip()]

    @classmethod
    def read_env(cls, env_file, **overrides):
        """A .env file's values for what the environment does not set; an empty one stays unset."""
        before = set(cls.ENVIRON)
        super().read_env(env_file, **overrides)
        for key in set(cls.ENVIRON) - before:
            if cls.ENVIRON[key] == "":
                del cls.ENVIRON[key]


env = Env()
Env.read_env(env.str("DJANGO_ENV_FILE", default=str(BASE_DIR / ".env")))


def _rate(name: str, default: str) -> str:
    """A rate setting; "none" (or "off", "0") for no limit (an empty value is unset: the default)."""
    value = env.str(name, default=default).strip()
    return "" if value.lower() in ("none", "off", "0") else value


# Set by the test run before these settings load (pytest.ini's `env`, through pytest-env), and so
# also seen by the servers the tests start.
TESTING = env.bool("DJANGO_TESTING", default=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set: set it in the environment or in .env (scripts/run writes "
            "one), or set DJANGO_DEBUG=true to use a development key."
        )
    SECRET_KEY = "django-insecure-local-development-key"
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Behind TLS (usually a proxy that sets X-Forwarded-Proto): secure cookies, HSTS, HTTPS only.
if env.bool("DJANGO_SECURE_SSL", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=False)
else:
    # Served as plain HTTP on purpose (a laptop, or TLS ended by a proxy that owns HSTS):
    # the deploy checks about TLS-only settings do not apply.
    SILENCED_SYSTEM_CHECKS = ["security.W004", "security.W008", "security.W012", "security.W016"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "accounts",
    # After accounts, whose oauth2_provider/authorize.html (the consent page) replaces its own.
    "oauth2_provider",
    "readings",
    "gateway",
    # Before django_grpc_framework: its grpcrunserver is replaced by the project's own.
    "grpc_api",
    "django_grpc_framework",
]

MIDDLEWARE = [
    "meterproject.metrics.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "meterproject.middleware.ContentSecurityPolicyMiddleware",
    # Serves static files under gunicorn (runserver serves them itself in debug).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: answers a locked-out sign-in (django-axes).
    "axes.middleware.AxesMiddleware",
]

# Sign-ins (the dashboard's, admin's, the API's session login) go through django-axes first: after
# LOGIN_FAILURE_LIMIT failed attempts for a username from one address, that pair is refused (429) for
# LOGIN_LOCKOUT_MINUTES, even with the right password; a success resets the count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The connection's address (as the API's rate limits count it): a client cannot pick its own.
AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]
# The refusal is a page in the dashboard's look that says for how long (with Retry-After).
AXES_LOCKOUT_CALLABLE = "gateway.views.locked_out"
# Where a page that needs a signed-in user (/o/authorize/ too) sends a visitor, and where signing
# in and out lands.
LOGIN_URL = env.str("LOGIN_URL", default="/accounts/login/")
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

ROOT_URLCONF = "meterproject.urls"
WSGI_APPLICATION = "meterproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    # dj-database-url rather than env.db(): django-environ leaves a socket path in the host
    # (postgres://%2Fvar%2Frun%2Fpostgresql/db) percent-encoded.
    "default": dj_database_url.parse(
        env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        # Kept between requests and gRPC calls for this many seconds (a new connection per call
        # costs more than the call); checked before reuse, so a connection the server dropped is
        # replaced, not used. 0 closes it after every request and call.
        conn_max_age=env.int("DATABASE_CONN_MAX_AGE", default=60),
        conn_health_checks=True,
    )
}
# PostgreSQL: parameters bound on the server and a statement prepared once it has run five times on
# a connection, then no longer planned on each call (an aggregate's statement: about 0.5 ms a
# call). Off by default, as in Django: a pooler in transaction mode (PgBouncer before 1.21) cannot
# keep a connection's prepared statements.
if env.bool("DATABASE_PREPARED_STATEMENTS", default=False) and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=5)
# The tests' database: by default pytest-django creates test_<NAME> and drops it after the run; a
# name here is an existing database, prepared beforehand (a TimescaleDB or Citus cluster's, with
# its extension; testing/pgclusters.py), which the tests migrate, use and keep.
# A test_ name, as pytest-django's own: tests empty the tables they use, and that prefix keeps
# them off a database that holds anything else.
if env.str("DATABASE_TEST_NAME", default=""):
    if not env.str("DATABASE_TEST_NAME").startswith("test_"):
        raise ImproperlyConfigured("DATABASE_TEST_NAME must start with test_ (the tests empty its tables)")
    DATABASES["default"]["TEST"] = {"NAME": env.str("DATABASE_TEST_NAME")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers (the gRPC server, the web server) work while an import writes;
    # IMMEDIATE takes the write lock up front instead of failing half-way with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        # A page cache of 64 MiB: the default of 2 MiB is outgrown at once by a store of millions
        # of readings. (Temporary tables stay on disk: an import stages its rows in one.)
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # collectstatic also writes compressed copies, which WhiteNoise serves to clients that take them.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# The stores that serve readings, by alias; Meter.source picks one (see readings/sources/).
READINGS_SOURCES = {
    "default": {"BACKEND": "readings.sources.sql.SqlSource", "OPTIONS": {}},
    "csv": {
        "BACKEND": "readings.sources.csv.CsvSource",
        "OPTIONS": {"DIRECTORY": env.str("READINGS_CSV_DIRECTORY", default=str(BASE_DIR / "data"))},
    },
    "influxdb": {"BACKEND": "readings.sources.influx.InfluxSource", "OPTIONS": {}},
}

# InfluxDB, spoken to over its 1.x HTTP API (InfluxDB 1.x, 2.x with DBRP mappings, 3 Core).
# TOKEN is sent as "Authorization: Token ..."; otherwise USERNAME/PASSWORD as basic auth.
INFLUXDB = {
    "URL": env.str("INFLUXDB_URL", default="http://127.0.0.1:8086"),
    "DATABASE": env.str("INFLUXDB_DATABASE", default="meterusage"),
    "TOKEN": env.str("INFLUXDB_TOKEN", default=""),
    "USERNAME": env.str("INFLUXDB_USERNAME", default=""),
    "PASSWORD": env.str("INFLUXDB_PASSWORD", default=""),
    "RETENTION_POLICY": env.str("INFLUXDB_RETENTION_POLICY", default=""),
    "TIMEOUT": env.float("INFLUXDB_TIMEOUT", default=10.0),
}

# gRPC: the address grpcrunserver binds, the target the web gateway calls, and the service's own
# tokens: other services' bearer tokens that read every meter (GRPC_AUTH_TOKENS), and read and
# write every meter (GRPC_WRITE_TOKENS). Users call with API keys; accounts/access.py decides.
GRPC_ADDRESS = env.str("GRPC_ADDRESS", default="127.0.0.1:50051")
GRPC_TARGET = env.str("GRPC_TARGET", default="127.0.0.1:50051")
GRPC_AUTH_TOKENS = env.list("GRPC_AUTH_TOKENS", default=[])
GRPC_WRITE_TOKENS = env.list("GRPC_WRITE_TOKENS", default=[])
# Calls a client address (calls without a credential) and a key may make ("N/second", "/minute",
# "/hour", "/day"; empty or "none": no limit); the service tokens and the web tier's callers are not counted.
GRPC_RATE_PER_ADDRESS = _rate("GRPC_RATE_PER_ADDRESS", "")
GRPC_RATE_PER_KEY = _rate("GRPC_RATE_PER_KEY", "")
GRPC_FRAMEWORK = {"ROOT_HANDLERS_HOOK": "grpc_api.handlers.grpc_handlers"}
# How often the gRPC server checks that its database answers (its health follows), and where it
# serves Prometheus metrics (empty: nowhere).
GRPC_HEALTH_CHECK_SECONDS = env.float("GRPC_HEALTH_CHECK_SECONDS", default=1.0)
GRPC_METRICS_ADDRESS = env.str("GRPC_METRICS_ADDRESS", default="")
# The web gateway's calls: bearer token to send, CA certificate (PEM file) that turns on TLS,
# and the deadline of every call.
GRPC_TOKEN = env.str("GRPC_TOKEN", default="")
GRPC_TLS_ROOT_CERT = env.str("GRPC_TLS_ROOT_CERT", default="")
GRPC_DEADLINE_SECONDS = env.float("GRPC_DEADLINE_SECONDS", default=10.0)
# The token the gateway sends for writes (staff users and users allowed to add readings write
# through it); by default the first of GRPC_WRITE_TOKENS, when this process knows them.
GRPC_WRITE_TOKEN = env.str("GRPC_WRITE_TOKEN", default="") or next(iter(GRPC_WRITE_TOKENS), "")

# Live readings. MQTT_URL names the broker `ingest_mqtt` subscribes to (mqtt://user:pass@host:port);
# INGEST_CREATE_METERS lets live writes create meters they do not know; the change log that
# WatchReadings serves keeps CHANGE_LOG_DAYS of changes (manage.py prune_changes).
MQTT_URL = env.str("MQTT_URL", default="")
MQTT_TOPIC = env.str("MQTT_TOPIC", default="meterusage/v1/meters/+/readings")
MQTT_CLIENT_ID = env.str("MQTT_CLIENT_ID", default="meterusage-ingest")
# Mosquitto's password file that `manage.py mqtt_credential` writes devices' credentials to.
MQTT_PASSWORD_FILE = env.str("MQTT_PASSWORD_FILE", default="")
INGEST_CREATE_METERS = env.bool("INGEST_CREATE_METERS", default=False)
# The broker keeps the consumer's session (and the messages for it) this long after it goes.
MQTT_SESSION_EXPIRY_SECONDS = env.int("MQTT_SESSION_EXPIRY_SECONDS", default=7 * 24 * 3600)
# ingest_mqtt touches this file every few seconds while connected (ROLE=ingest health check).
INGEST_HEARTBEAT_FILE = env.str("INGEST_HEARTBEAT_FILE", default="")
INGEST_METRICS_ADDRESS = env.str("INGEST_METRICS_ADDRESS", default="")
CHANGE_LOG_DAYS = env.float("CHANGE_LOG_DAYS", default=7.0)
# On a database with TimescaleDB (migration 0015): the readings' chunk width, and the age past
# which chunks are compressed (both in days; the chunk width applies when the migration runs).
TIMESCALE_CHUNK_DAYS = env.float("TIMESCALE_CHUNK_DAYS", default=7.0)
TIMESCALE_COMPRESS_AFTER_DAYS = env.float("TIMESCALE_COMPRESS_AFTER_DAYS", default=30.0)
# How often a watching server looks for changes when the database cannot notify it (SQLite),
# and how often an idle watch gets a heartbeat.
WATCH_POLL_SECONDS = env.float("WATCH_POLL_SECONDS", default=0.25)
WATCH_HEARTBEAT_SECONDS = env.float("WATCH_HEARTBEAT_SECONDS", default=15.0)

# Django's cache: local memory, or Redis shared by every process when REDIS_URL is set. The
# gateway keeps answers about closed past ranges there for API_CACHE_SECONDS (0: not at all).
REDIS_URL = env.str("REDIS_URL", default="")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "OPTIONS": {"MAX_ENTRIES": 1000}}
    )
}
API_CACHE_SECONDS = env.int("API_CACHE_SECONDS", default=300)
# The largest body POST /api/v1/meters/{meter}/readings/ takes (413 past it): 8 MiB holds the
# 100,000 readings one write may carry, as CSV or JSON.
API_WRITE_MAX_BYTES = env.int("API_WRITE_MAX_BYTES", default=8 * 1024 * 1024)

# /metrics (Prometheus): open to anyone with METRICS_PUBLIC (the default in debug); otherwise to
# staff users and to requests with `Authorization: Bearer <METRICS_TOKEN>`.
METRICS_PUBLIC = env.bool("METRICS_PUBLIC", default=DEBUG)
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# HTTP API (gateway/api/): callers are anonymous (public meters), signed in (a session), or
# present an API key (Authorization: Bearer). Every error is application/problem+json.
# Requests to the API per address (anonymous callers) and per user, DRF's throttling: "N/second",
# "/minute", "/hour" or "/day"; "none", no limit. Counted in the default cache: with REDIS_URL
# every web server counts in one place, otherwise each process for itself.
API_RATE_ANONYMOUS = _rate("API_RATE_ANONYMOUS", "600/minute")
API_RATE_USER = _rate("API_RATE_USER", "3000/minute")
# The same per API key or OAuth token, on top of its user's.
API_RATE_KEY = _rate("API_RATE_KEY", "1200/minute")
# How many proxies in front of the web server append to X-Forwarded-For; 0: the address is the
# connection's (a client's own X-Forwarded-For cannot lift its limit).
API_PROXIES = env.int("API_PROXIES", default=0)

# Third-party apps a user authorises (OAuth 2, django-oauth-toolkit, under /o/): authorization
# code with PKCE (S256) only, https redirect URIs registered exactly, tokens kept as checksums,
# refresh tokens rotated and a replayed one revoking its whole family.
OAUTH2_PROVIDER = {
    "SCOPES": {
        "read": "read the readings of your meters",
        "write": "read the readings of your meters and add readings to them",
    },
    "DEFAULT_SCOPES": ["read"],
    "PKCE_REQUIRED": True,
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    "ACCESS_TOKEN_EXPIRE_SECONDS": env.int("OAUTH_ACCESS_TOKEN_SECONDS", default=3600),
    "REFRESH_TOKEN_EXPIRE_SECONDS": int(env.float("OAUTH_REFRESH_TOKEN_DAYS", default=90) * 86400),
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"],
    # RFC 9700 (OAuth 2.0 Security Best Current Practice), enforced rather than warned about.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_SCHEME": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # API keys (manage.py apikey create): Authorization: Bearer <key>. First: its
        # WWW-Authenticate header makes an anonymous refusal a 401, not a 403.
        "accounts.authentication.ApiKeyAuthentication",
        # OAuth 2 access tokens (django-oauth-toolkit's class): any other Bearer text.
        "accounts.authentication.AccessTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Anyone may read, and sees public meters; what else a caller reads and writes, the gRPC
    # service decides (accounts/access.py).
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_RENDERER_CLASSES": [
        "gateway.api.renderers.FastJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
        "accounts.throttles.KeyRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": API_RATE_ANONYMOUS or None, "user": API_RATE_USER or None, "key": API_RATE_KEY or None,
    },
    "NUM_PROXIES": API_PROXIES,
    "DEFAULT_PAGINATION_CLASS": "gateway.api.pagination.PageNumberPagination",
    "EXCEPTION_HANDLER": "gateway.api.problems.problem_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "meterusage HTTP API",
    "DESCRIPTION": (
        "Interval meter readings as JSON or CSV. Meters and import runs come from the relational "
        "store; readings, aggregates and completeness from the meterusage.v1 gRPC service. Times are "
        "RFC 3339 in UTC; errors are application/problem+json (RFC 9457)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's files come from drf-spectacular-sidecar, served with the other static files.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # OAuth 2 (third-party apps): the authorization code flow of /o/.
    "OAUTH2_FLOWS": ["authorizationCode"],
    "OAUTH2_AUTHORIZATION_URL": "/o/authorize/",
    "OAUTH2_TOKEN_URL": "/o/token/",
    "OAUTH2_REFRESH_URL": "/o/token/",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "gateway.api.schema.empty_list_parameters_are_omitted",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "meterproject.logformat.JsonFormatter"},
    },
    # Everything to stdout, as plain text or (DJANGO_LOG_FORMAT=json) one JSON object a line.
    "handlers": {
        "console": {
            # Written on a thread of its own: logging holds no event loop (meterproject/logs.py).
            "class": "meterproject.logs.BackgroundStreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json" if env.str("DJANGO_LOG_FORMAT", default="plain") == "json" else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO")},
    # Replaces Django's own console handler, which would print every record twice.
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Connection retries are summed up in the error that follows them.
        "urllib3": {"level": "ERROR"},
        # django-axes announces itself at every start; its sign-in failures and lockouts stay.
        "axes.apps": {"level": "WARNING"},
    },
}
