from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.keys import create_key, revoke_key
from accounts.models import ApiKey
from readings.domain import quoted
from readings.models import Meter


class Command(BaseCommand):
    help = (
        "Manage API keys: `apikey create USERNAME [--scope read|write] [--meter NAME ...] "
        "[--expires-in DAYS]` (prints the key alone on its last line, the only time it is shown), "
        "`apikey revoke PREFIX`, `apikey list`."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="Make a key for a user.")
        create.add_argument("username")
        create.add_argument("--scope", choices=ApiKey.Scope.values, default=ApiKey.Scope.READ)
        create.add_argument(
            "--meter", dest="meters", action="append", default=[], metavar="NAME",
            help="Limit the key to this meter; repeat for more (default: every meter the user may see).",
        )
        create.add_argument("--expires-in", type=float, metavar="DAYS", help="Days until the key stops working.")
        revoke = actions.add_parser("revoke", help="Stop a key working, at once.")
        revoke.add_argument("prefix", help="The key's prefix, as `apikey list` shows it.")
        actions.add_parser("list", help="Every key: prefix, user, scope, meters, expiry, last use.")

    def handle(self, *args, action, **options):
        getattr(self, f"handle_{action}")(**options)

    def handle_create(self, *, username, scope, meters, expires_in, **options):
        try:
            user = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user named {quoted(username)} (make one with `account add ACCOUNT --user {username[:40]}`)") from None
        found = list(Meter.objects.filter(name__in=meters))
        missing = sorted(set(meters) - {meter.name for meter in found})
        if missing:
            raise CommandError(f"no meter named {quoted(missing[0])}")
        if expires_in is not None and expires_in <= 0:
            raise CommandError(f"--expires-in {expires_in:g}: give a number of days above 0")
        key, text = create_key(
            user=user, scope=scope, meters=found,
            expires_in=timedelta(days=expires_in) if expires_in is not None else None,
        )
        limits = f" on {', '.join(sorted(meters))}" if meters else ""
        expiry = f", expires {key.expires_at:%Y-%m-%d %H:%M} UTC" if key.expires_at else ""
        self.stdout.write(f"Key {key.prefix} for {username}: {scope}{limits}{expiry}. It is shown once:")
        self.stdout.write(text)

    def handle_revoke(self, *, prefix, **options):
        try:
            key = revoke_key(prefix)
        except ApiKey.DoesNotExist:
            raise CommandError(f"no key with prefix {quoted(prefix)}") from None
        self.stdout.write(f"Key {key.prefix} of {key.user} revoked at {key.revoked_at:%Y-%m-%d %H:%M:%S} UTC.")

    def handle_list(self, **options):
        keys = ApiKey.objects.select_related("user").prefetch_related("meters").order_by("user__username", "created_at")
        for key in keys:
            meters = ",".join(sorted(meter.name for meter in key.meters.all())) or "all"
            state = "revoked" if key.revoked_at else ("expired" if not key.is_usable() else "active")
            expires = f"{key.expires_at:%Y-%m-%d}" if key.expires_at else "never"
            used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
            self.stdout.write(f"{key.prefix}  {key.user.username}  {key.scope}  meters={meters}  "
                              f"expires={expires}  last_used={used}  {state}")
        if not keys:
            self.stdout.write("No API keys.")
