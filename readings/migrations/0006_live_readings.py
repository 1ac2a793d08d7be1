import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('readings', '0005_reading_indexes_for_writes'),
    ]

    operations = [
        migrations.AddField(
            model_name='meter',
            name='changes_pruned_through',
            field=models.PositiveBigIntegerField(default=0, editable=False),
        ),
        migrations.CreateModel(
            name='RejectedMessage',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('received_at', models.DateTimeField(auto_now_add=True)),
                ('channel', models.CharField(default='mqtt', max_length=16)),
                ('topic', models.CharField(max_length=500)),
                ('meter_name', models.CharField(blank=True, max_length=200)),
                ('payload_excerpt', models.TextField(blank=True)),
                ('payload_size', models.PositiveIntegerField(default=0)),
                ('reason', models.TextField()),
            ],
            options={
                'ordering': ['-received_at', '-id'],
                'indexes': [models.Index(fields=['-received_at'], name='rejectedmessage_received_idx')],
            },
        ),
        migrations.CreateModel(
            name='ReadingChange',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('time', models.DateTimeField()),
                ('value', models.FloatField()),
                ('replaced', models.BooleanField(default=False)),
                ('committed_at', models.DateTimeField()),
                ('meter', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='changes', to='readings.meter')),
            ],
            options={
                'indexes': [models.Index(fields=['meter', 'id'], name='readingchange_meter_id_idx')],
            },
        ),
    ]
