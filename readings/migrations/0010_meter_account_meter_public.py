import django.db.models.deletion
from django.db import migrations, models

DEFAULT_ACCOUNT = "default"  # accounts.models.DEFAULT_ACCOUNT, as it was when this ran


def own_existing_meters(apps, schema_editor):
    """The meters made before accounts existed belong to the default account."""
    Account = apps.get_model("accounts", "Account")
    Meter = apps.get_model("readings", "Meter")
    if Meter.objects.exists():
        account, _ = Account.objects.get_or_create(name=DEFAULT_ACCOUNT)
        Meter.objects.filter(account__isnull=True).update(account=account)


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0001_initial"),
        ("readings", "0009_store_identity"),
    ]

    operations = [
        migrations.AddField(
            model_name="meter",
            name="account",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="meters",
                to="accounts.account",
            ),
        ),
        migrations.AddField(
            model_name="meter",
            name="public",
            field=models.BooleanField(default=False, help_text="Anyone may read this meter's readings."),
        ),
        migrations.RunPython(own_existing_meters, migrations.RunPython.noop),
    ]
