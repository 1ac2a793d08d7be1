"""Accounts (the customers that own meters), their members, and the API keys members make."""
from django.conf import settings
from django.db import models
from django.utils import timezone

# The account the migration gives every meter that existed before accounts did.
DEFAULT_ACCOUNT = "default"


class Account(models.Model):
    """A customer: a household, a company, a tenant. Its members are Django users."""

    name = models.SlugField(max_length=64, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="accounts", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """A key a user made to call the API (HTTP `Authorization: Bearer`, gRPC `authorization`
    metadata). Only its digest is kept; `prefix` names it in lists and logs."""

    class Scope(models.TextChoices):
        READ = "read"
        WRITE = "write"  # reads too

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)  # SHA-256 of the whole key, hex
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.READ)
    # None of them listed: every meter the user may see.
    meters = models.ManyToManyField("readings.Meter", blank=True, related_name="api_keys")
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    def is_usable(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
