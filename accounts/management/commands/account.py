from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Account


class Command(BaseCommand):
    help = "Manage accounts: `account add ACCOUNT [--user USERNAME ...]`."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="Create the account if missing and add the users to it.")
        add.add_argument("account", help="The account's name (letters, digits, - and _).")
        add.add_argument(
            "--user", dest="users", action="append", default=[], metavar="USERNAME",
            help="A member to add (created without a usable password if missing); repeat for more.",
        )

    def handle(self, *args, action, account, users, **options):
        with transaction.atomic():
            found, created = Account.objects.get_or_create(name=account)
            for username in users:
                user, made = get_user_model().objects.get_or_create(username=username)
                if made:
                    user.set_unusable_password()
                    user.save(update_fields=["password"])
                    self.stdout.write(f"User {username} created (no password: set one with changepassword).")
                found.members.add(user)
        members = ", ".join(found.members.order_by("username").values_list("username", flat=True)) or "none"
        self.stdout.write(f"Account {found.name} {'created' if created else 'exists'}; members: {members}.")
