import json

from django import forms
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connections, models, transaction
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from readings.admin_uploads import confirm_upload, preview_upload
from readings.models import ImportRun, Meter, Reading, ReadingChange, RejectedMessage, Write

EXACT_COUNT_TIMEOUT_MS = 200


class EstimatedCountPaginator(Paginator):
    """Counts exactly when that takes under EXACT_COUNT_TIMEOUT_MS, else asks PostgreSQL's planner.

    A page of readings is an index scan; the COUNT(*) Django's paginator runs beside it is a
    scan of every matching row, which on a large table costs far more than the page itself.
    """

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return super().count
        try:
            with transaction.atomic(using=queryset.db), connection.cursor() as cursor:
                cursor.execute(
                    "SELECT current_setting('statement_timeout'), set_config('statement_timeout', %s, true)",
                    [str(EXACT_COUNT_TIMEOUT_MS)],
                )
                previous = cursor.fetchone()[0]
                count = queryset.count()
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
                return count
        except DatabaseError:
            plan = json.loads(queryset.explain(format="json"))
            return int(plan[0]["Plan"]["Plan Rows"])


class ImportRunInline(admin.TabularInline):
    model = ImportRun
    fields = ["started_at", "status", "target", "file_name", "written_by", "rows_inserted", "rows_updated",
              "rows_unchanged", "rows_skipped", "rows_invalid", "dry_run"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    show_change_link = True
    can_delete = False
    ordering = ["-started_at"]
    verbose_name_plural = "import history"


class ViewOnlyAdmin(admin.ModelAdmin):
    """A record that is written by the project, never in admin: viewed only."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Meter)
class MeterAdmin(admin.ModelAdmin):
    list_display = ["name", "account", "public", "unit", "time_zone", "interval", "source", "reading_count",
                    "first_reading_at", "last_reading_at"]
    list_filter = ["account", "public", "source", "time_zone"]
    list_select_related = ["account"]
    change_form_template = "admin/readings/meter/change_form.html"
    search_fields = ["name", "description"]
    readonly_fields = ["reading_count", "first_reading_at", "last_reading_at", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "description", "unit", "time_zone", "interval", "source"]}),
        ("Access", {"fields": ["account", "public"]}),
        ("Readings", {"fields": ["reading_count", "first_reading_at", "last_reading_at"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]
    inlines = [ImportRunInline]

    def get_urls(self):
        upload = self.admin_site.admin_view(self.upload_view)
        return [path("<path:object_id>/upload/", upload, name="readings_meter_upload"), *super().get_urls()]

    def upload_view(self, request, object_id):
        """A CSV file for this meter: previewed as a dry run, imported on confirmation."""
        meter = get_object_or_404(Meter, pk=object_id)
        if not self.has_change_permission(request, meter):
            raise PermissionDenied
        form, preview = UploadForm(initial={"time_zone": meter.time_zone}), None
        if request.method == "POST" and "confirm" in request.POST:
            run, error = confirm_upload(meter, request.POST.get("token", ""), user=request.user)
            if run is not None and not error:
                messages.success(request, f"{run.file_name} imported: {run.rows_inserted} inserted, "
                                          f"{run.rows_updated} updated, {run.rows_unchanged} unchanged, {run.rows_skipped} skipped.")
                return redirect(reverse("admin:readings_meter_change", args=[meter.pk]))
            messages.error(request, error)
        elif request.method == "POST":
            form = UploadForm(request.POST, request.FILES)
            if form.is_valid():
                upload = form.cleaned_data["file"]
                preview = preview_upload(meter, upload.name, upload.read(), time_zone=form.cleaned_data["time_zone"] or None,
                                         user=request.user)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "meter": meter,
                   "form": form, "preview": preview, "title": f"Upload readings for {meter.name}"}
        return TemplateResponse(request, "admin/readings/meter/upload.html", context)


class UploadForm(forms.Form):
    file = forms.FileField(help_text="CSV with the header time,meterusage.")
    time_zone = forms.CharField(required=False, help_text="IANA zone of the file's times; default: the meter's.")


class ReadingAdmin(ViewOnlyAdmin):
    """Readings are written by imports only (each one recorded), so admin lists them read-only.

    A reading is keyed by (meter, time), which Django 5.2's admin does not take for a page of its
    own: only the list is served, and it links to no reading."""

    list_display = ["time", "meter", "value"]
    list_filter = ["meter"]
    date_hierarchy = "time"

    def get_ordering(self, request):
        # What the (meter, time) index serves read backwards, so a page is an index scan, not a
        # sort of the table: newest first within a meter (one meter when filtered by it).
        return ["-time"] if "meter__id__exact" in request.GET else ["-meter", "-time"]
    list_select_related = ["meter"]
    list_per_page = 100
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_display_links = None

    def get_urls(self):
        changelist = self.admin_site.admin_view(self.changelist_view)
        return [path("", changelist, name="readings_reading_changelist")]



@admin.register(ImportRun)
class ImportRunAdmin(admin.ModelAdmin):
    list_display = ["started_at", "meter_name", "target", "status", "dry_run", "file_name", "written_by",
                    "rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_skipped",
                    "rows_invalid", "points_written"]
    list_filter = ["status", "target", "dry_run", "meter"]
    search_fields = ["meter_name", "file_name", "file_sha256", "written_by"]
    date_hierarchy = "started_at"
    fieldsets = [
        (None, {"fields": ["meter_name", "meter", "target", "status", "dry_run", "error"]}),
        ("File", {"fields": ["file_name", "file_size", "file_sha256", "time_zone"]}),
        ("Who", {"fields": ["written_by", "uploaded_by", "write"]}),
        ("Timing", {"fields": ["started_at", "finished_at", "duration"]}),
        ("Counts", {"fields": ["rows_read", "rows_inserted", "rows_updated", "rows_unchanged",
                               "rows_skipped", "rows_invalid", "points_written"]}),
        ("Rejected rows", {"fields": ["rejected_rows_table"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in ImportRun._meta.fields] + ["duration", "rejected_rows_table"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="rejected rows")
    def rejected_rows_table(self, obj):
        if not obj.rejected_rows:
            return "none"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((r["line"], r["kind"], r["value"], r["reason"]) for r in obj.rejected_rows),
        )
        return format_html(
            "<table><thead><tr><th>line</th><th>kind</th><th>value</th><th>reason</th></tr>"
            "</thead><tbody>{}</tbody></table>",
            rows,
        )


@admin.register(RejectedMessage)
class RejectedMessageAdmin(admin.ModelAdmin):
    """Live messages that stored nothing (rejected or skipped by ingest_mqtt); a record of what
    happened, so read-only."""

    list_display = ["received_at", "outcome", "channel", "topic", "meter_name", "payload_size", "reason"]
    list_filter = ["outcome", "channel"]
    search_fields = ["topic", "meter_name", "reason"]
    date_hierarchy = "received_at"
    list_per_page = 100

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in RejectedMessage._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class AuthorKindFilter(admin.SimpleListFilter):
    """Writes by kind of author: the part of `written_by` before its colon."""

    title = "who"
    parameter_name = "author"
    KINDS = [("user", "users"), ("key", "API keys"), ("oauth", "OAuth clients"), ("device", "devices (MQTT)"),
             ("command", "commands"), ("service", "the service")]

    def lookups(self, request, model_admin):
        return self.KINDS

    def queryset(self, request, queryset):
        kind = self.value()
        if kind not in dict(self.KINDS):
            return queryset
        return queryset.filter(models.Q(written_by=kind) | models.Q(written_by__startswith=f"{kind}:"))


def changes_url(write: Write) -> str | None:
    """The change log of a write of one meter (found through the meter's index of changes)."""
    if write.meter_id is None:
        return None
    query = urlencode({"meter__id__exact": write.meter_id, "write": write.pk})
    return f"{reverse('admin:readings_readingchange_changelist')}?{query}"


@admin.register(Write)
class WriteAdmin(ViewOnlyAdmin):
    """Who wrote what: one row per committed write, a record, so read-only."""

    list_display = ["committed_at", "author", "channel", "meters", "inserted", "updated", "unchanged", "import_run_link"]
    list_filter = ["channel", AuthorKindFilter]
    search_fields = ["written_by"]
    list_select_related = ["meter", "import_run"]
    ordering = ["-id"]
    list_per_page = 100
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    fields = ["written_by", "channel", "committed_at", "meter", "meter_count", "inserted", "updated", "unchanged",
              "import_run_link", "changes_link"]

    def get_readonly_fields(self, request, obj=None):
        return self.fields


    @admin.display(description="who", ordering="written_by")
    def author(self, write):
        # Every write of the same author, by the list's own filter of the field.
        return format_html('<a href="?{}">{}</a>', urlencode({"written_by": write.written_by}), write.written_by)

    @admin.display(description="meter(s)")
    def meters(self, write):
        if write.meter is not None:
            return write.meter.name
        return f"{write.meter_count} meters" if write.meter_count > 1 else "—"

    @admin.display(description="import run")
    def import_run_link(self, write):
        run = getattr(write, "import_run", None)
        if run is None:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:readings_importrun_change", args=[run.pk]), run.file_name)

    @admin.display(description="changes")
    def changes_link(self, write):
        url = changes_url(write)
        if url is None or not (write.inserted or write.updated):
            return "—"
        return format_html('<a href="{}">{} changed readings</a>', url, write.inserted + write.updated)


@admin.register(ReadingChange)
class ReadingChangeAdmin(ViewOnlyAdmin):
    """The change log WatchReadings serves, each change with the write (and its author) that made it;
    read-only. Filtered by meter, a page is a scan of the (meter, id) index backwards."""

    list_display = ["id", "committed_at", "meter", "time", "value", "replaced", "author", "write_link"]
    list_filter = ["meter"]
    list_select_related = ["meter", "write"]
    ordering = ["-id"]
    list_per_page = 100
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in ReadingChange._meta.fields] + ["author"]


    @admin.display(description="written by")
    def author(self, change):
        return change.write.written_by if change.write_id and change.write else "—"

    @admin.display(description="write")
    def write_link(self, change):
        if not change.write_id:
            return "—"
        return format_html('<a href="{}">#{}</a>', reverse("admin:readings_write_change", args=[change.write_id]), change.write_id)


# admin.site.register refuses a model with a composite primary key outright (Django 5.2); the list
# above asks nothing of the key but its ordering, so it is put in the site's registry directly.
admin.site._registry[Reading] = ReadingAdmin(Reading, admin.site)
