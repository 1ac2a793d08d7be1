import secrets

from django.db import migrations, models


def make_key(apps, schema_editor):
    apps.get_model("readings", "StoreIdentity").objects.get_or_create(pk=1, defaults={"key": secrets.token_hex(16)})


class Migration(migrations.Migration):
    """The store's key, made once: an unmanaged model, so its table is made here and no flush of
    the data removes it."""

    dependencies = [
        ("readings", "0008_rejected_message_outcome"),
    ]

    operations = [
        migrations.CreateModel(
            name="StoreIdentity",
            fields=[
                ("id", models.IntegerField(primary_key=True, serialize=False)),
                ("key", models.CharField(max_length=32)),
            ],
            options={"db_table": "readings_storeidentity", "managed": False},
        ),
        migrations.RunSQL(
            "CREATE TABLE readings_storeidentity (id integer PRIMARY KEY, key varchar(32) NOT NULL)",
            "DROP TABLE readings_storeidentity",
        ),
        migrations.RunPython(make_key, migrations.RunPython.noop),
    ]
