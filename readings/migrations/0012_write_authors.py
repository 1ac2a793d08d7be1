"""Who made each write: a Write row per committed write (its author, channel and counts), the
change-log rows pointing at theirs, and each import run's author and write. Import runs uploaded in
admin before this are given their uploader as author; earlier command runs stay without one."""
import django.db.models.deletion
from django.db import migrations, models


def uploaders_as_authors(apps, schema_editor):
    ImportRun = apps.get_model("readings", "ImportRun")
    for run in ImportRun.objects.filter(uploaded_by__isnull=False).select_related("uploaded_by"):
        run.written_by = f"user:{run.uploaded_by.username}"[:160]
        run.save(update_fields=["written_by"])


class Migration(migrations.Migration):

    dependencies = [
        ('readings', '0011_import_run_uploaded_by'),
    ]

    operations = [
        migrations.CreateModel(
            name='Write',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('written_by', models.CharField(max_length=160)),
                ('channel', models.CharField(choices=[('file', 'File import'), ('grpc', 'WriteReadings'), ('mqtt', 'MQTT')], max_length=8)),
                ('committed_at', models.DateTimeField()),
                ('meter_count', models.PositiveIntegerField(default=1)),
                ('inserted', models.PositiveBigIntegerField(default=0)),
                ('updated', models.PositiveBigIntegerField(default=0)),
                ('unchanged', models.PositiveBigIntegerField(default=0)),
                ('meter', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='writes', to='readings.meter')),
            ],
            options={
                'ordering': ['-id'],
                'indexes': [models.Index(fields=['written_by', '-id'], name='write_written_by_idx')],
            },
        ),
        # A nullable column without a constraint or index: PostgreSQL and SQLite add it without
        # rewriting the change log.
        migrations.AddField(
            model_name='readingchange',
            name='write',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='changes', to='readings.write'),
        ),
        migrations.AddField(
            model_name='importrun',
            name='written_by',
            field=models.CharField(blank=True, max_length=160),
        ),
        migrations.AddField(
            model_name='importrun',
            name='write',
            field=models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='import_run', to='readings.write'),
        ),
        migrations.RunPython(uploaders_as_authors, migrations.RunPython.noop, elidable=True),
    ]
