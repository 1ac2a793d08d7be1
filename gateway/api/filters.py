import django_filters
from django import forms

from readings.models import ImportRun, RejectedMessage

TRUE_OR_FALSE = "must be true or false"


def parse_true_or_false(value: str) -> bool:
    """true or false, and ValueError for anything else (Django and DRF also read 1, yes, on ...)."""
    if value not in ("true", "false"):
        raise ValueError(TRUE_OR_FALSE)
    return value == "true"


class StrictBooleanField(forms.NullBooleanField):
    widget = forms.TextInput

    def to_python(self, value):
        if value in (None, ""):
            return None
        try:
            return parse_true_or_false(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


def time_range_filters(field: str, what: str) -> tuple[django_filters.Filter, django_filters.Filter]:
    """The `..._after` (included) and `..._before` (excluded) filters of a time field."""
    return (
        django_filters.IsoDateTimeFilter(field_name=field, lookup_expr="gte", help_text=f"{what} at or after this RFC 3339 time."),
        django_filters.IsoDateTimeFilter(field_name=field, lookup_expr="lt", help_text=f"{what} before this RFC 3339 time."),
    )


class ImportRunFilter(django_filters.FilterSet):
    meter = django_filters.CharFilter(field_name="meter_name", help_text="Name of the meter imported into.")
    status = django_filters.ChoiceFilter(choices=ImportRun.Status.choices, help_text="Outcome of the run.")
    target = django_filters.ChoiceFilter(choices=ImportRun.Target.choices, help_text="Store imported into.")
    dry_run = StrictBooleanFilter(help_text="Only dry runs (true) or real ones (false).")
    started_after, started_before = time_range_filters("started_at", "Runs started")

    class Meta:
        model = ImportRun
        fields = ["meter", "status", "target", "dry_run", "started_after", "started_before"]


class RejectedMessageFilter(django_filters.FilterSet):
    outcome = django_filters.ChoiceFilter(
        choices=RejectedMessage.Outcome.choices, help_text="rejected (could not be used) or skipped (no value in it).",
    )
    channel = django_filters.CharFilter(help_text="Where the message came from (mqtt).")
    meter = django_filters.CharFilter(field_name="meter_name", help_text="Name of the meter its topic named.")
    topic = django_filters.CharFilter(help_text="Exact topic.")
    received_after, received_before = time_range_filters("received_at", "Messages received")

    class Meta:
        model = RejectedMessage
        fields = ["outcome", "channel", "meter", "topic", "received_after", "received_before"]
