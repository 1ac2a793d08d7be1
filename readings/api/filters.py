import django_filters
from django import forms
from django.db.models import Q
from drf_spectacular.utils import extend_schema_field

from readings.models import ImportRun, Meter


class StrictBooleanField(forms.NullBooleanField):
    """true or false, and an error for anything else (Django's field reads other text as None)."""

    widget = forms.TextInput

    def to_python(self, value):
        if value in (None, ""):
            return None
        if value in ("true", "false"):
            return value == "true"
        raise forms.ValidationError("must be true or false", code="invalid")


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


HAS_READINGS_HELP = "Only meters with (true) or without (false) readings."


class MeterFilter(django_filters.FilterSet):
    search = django_filters.CharFilter(method="filter_search", help_text="Part of the name or description.")
    source = django_filters.CharFilter(help_text="Alias of the readings source that serves the meter.")
    time_zone = django_filters.CharFilter(help_text="IANA time zone of the meter.")
    unit = django_filters.CharFilter(help_text="Unit of the values, e.g. kWh.")
    has_readings = StrictBooleanFilter(method="filter_has_readings", help_text=HAS_READINGS_HELP)

    class Meta:
        model = Meter
        fields = ["search", "source", "time_zone", "unit", "has_readings"]

    def filter_search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(description__icontains=value))

    # A method filter: its type cannot come from the model, so the schema is given here.
    @extend_schema_field({"type": "boolean", "description": HAS_READINGS_HELP})
    def filter_has_readings(self, queryset, name, value: bool):
        return queryset.filter(reading_count__gt=0) if value else queryset.filter(reading_count=0)


class ImportRunFilter(django_filters.FilterSet):
    meter = django_filters.CharFilter(field_name="meter_name", help_text="Name of the meter imported into.")
    status = django_filters.ChoiceFilter(choices=ImportRun.Status.choices, help_text="Outcome of the run.")
    target = django_filters.ChoiceFilter(choices=ImportRun.Target.choices, help_text="Store imported into.")
    dry_run = StrictBooleanFilter(help_text="Only dry runs (true) or real ones (false).")
    started_after = django_filters.IsoDateTimeFilter(
        field_name="started_at", lookup_expr="gte", help_text="Runs started at or after this RFC 3339 time."
    )
    started_before = django_filters.IsoDateTimeFilter(
        field_name="started_at", lookup_expr="lt", help_text="Runs started before this RFC 3339 time."
    )

    class Meta:
        model = ImportRun
        fields = ["meter", "status", "target", "dry_run", "started_after", "started_before"]
