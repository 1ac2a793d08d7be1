"""Settings for meterusage, read from the environment (see .env.sample)."""
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", False)
# The fallback key is for local use only: `check --deploy` flags it (security.W009).
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or "django-insecure-local-development-key"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "readings",
    # Before django_grpc_framework: its grpcrunserver is replaced by the project's own.
    "grpc_api",
    "django_grpc_framework",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        # 0 (Django's default): closed at the end of every request and gRPC call.
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers (the gRPC server, the web server) work while an import writes;
    # IMMEDIATE takes the write lock up front instead of failing half-way with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
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
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", BASE_DIR / "staticfiles"))

# The stores that serve readings, by alias; Meter.source picks one (see readings/sources/).
READINGS_SOURCES = {
    "default": {"BACKEND": "readings.sources.sql.SqlSource", "OPTIONS": {}},
    "csv": {
        "BACKEND": "readings.sources.csv.CsvSource",
        "OPTIONS": {"DIRECTORY": os.environ.get("READINGS_CSV_DIRECTORY", str(BASE_DIR / "data"))},
    },
    "influxdb": {"BACKEND": "readings.sources.influx.InfluxSource", "OPTIONS": {}},
}

# InfluxDB, spoken to over its 1.x HTTP API (InfluxDB 1.x, 2.x with DBRP mappings, 3 Core).
# TOKEN is sent as "Authorization: Token ..."; otherwise USERNAME/PASSWORD as basic auth.
INFLUXDB = {
    "URL": os.environ.get("INFLUXDB_URL", "http://127.0.0.1:8086"),
    "DATABASE": os.environ.get("INFLUXDB_DATABASE", "meterusage"),
    "TOKEN": os.environ.get("INFLUXDB_TOKEN", ""),
    "USERNAME": os.environ.get("INFLUXDB_USERNAME", ""),
    "PASSWORD": os.environ.get("INFLUXDB_PASSWORD", ""),
    "RETENTION_POLICY": os.environ.get("INFLUXDB_RETENTION_POLICY", ""),
    "TIMEOUT": float(os.environ.get("INFLUXDB_TIMEOUT", "10")),
}

# gRPC: the address grpcrunserver binds, the target the web gateway calls, and the bearer tokens
# the server accepts (none: no authentication).
GRPC_ADDRESS = os.environ.get("GRPC_ADDRESS", "127.0.0.1:50051")
GRPC_TARGET = os.environ.get("GRPC_TARGET", "127.0.0.1:50051")
GRPC_AUTH_TOKENS = env_list("GRPC_AUTH_TOKENS", "")
GRPC_FRAMEWORK = {"ROOT_HANDLERS_HOOK": "grpc_api.handlers.grpc_handlers"}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
    # Replaces Django's own console handler, which would print every record twice.
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Connection retries are summed up in the error that follows them.
        "urllib3": {"level": "ERROR"},
    },
}
