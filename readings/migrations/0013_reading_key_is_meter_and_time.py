"""Readings are identified by (meter, time): the primary key becomes the pair and the id column goes.

Django cannot move a table between a one-column and a composite primary key itself, so the model
state changes here and the table is altered by hand: PostgreSQL adds the pair's key and drops the
unique constraint it replaces; SQLite copies the table into one made with the new key."""
from django.db import migrations, models

TABLE = "readings_reading"


def key_by_meter_and_time(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT {TABLE}_pkey")
        schema_editor.execute(f"ALTER TABLE {TABLE} DROP COLUMN id")
        schema_editor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (meter_id, time)")
        schema_editor.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT reading_meter_time_uniq")
        return
    schema_editor.execute(f"ALTER TABLE {TABLE} RENAME TO {TABLE}_before_key")
    schema_editor.create_model(apps.get_model("readings", "Reading"))
    schema_editor.execute(
        f"INSERT INTO {TABLE} (meter_id, time, value) SELECT meter_id, time, value FROM {TABLE}_before_key"
    )
    schema_editor.execute(f"DROP TABLE {TABLE}_before_key")


class Migration(migrations.Migration):

    dependencies = [
        ("readings", "0012_write_authors"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(model_name="reading", name="reading_meter_time_uniq"),
                migrations.RemoveField(model_name="reading", name="id"),
                migrations.AddField(
                    model_name="reading",
                    name="pk",
                    field=models.CompositePrimaryKey(
                        "meter", "time", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
            ],
        ),
        migrations.RunPython(key_by_meter_and_time, elidable=False),
    ]
