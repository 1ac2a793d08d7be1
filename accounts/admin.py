from django.contrib import admin, messages
from django.db.models import Count
from django.utils import timezone

from accounts.keys import create_key
from accounts.models import Account, ApiKey


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["name", "member_count", "meter_count", "created_at"]
    search_fields = ["name", "members__username"]
    filter_horizontal = ["members"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            member_total=Count("members", distinct=True), meter_total=Count("meters", distinct=True),
        )

    @admin.display(description="members", ordering="member_total")
    def member_count(self, account):
        return account.member_total

    @admin.display(description="meters", ordering="meter_total")
    def meter_count(self, account):
        return account.meter_total


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are made here or with `manage.py apikey create`; the key itself is shown once, when made."""

    list_display = ["prefix", "user", "scope", "expires_at", "last_used_at", "revoked_at", "created_at"]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "user__username"]
    readonly_fields = ["prefix", "revoked_at", "last_used_at", "created_at"]
    filter_horizontal = ["meters"]
    list_select_related = ["user"]
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        made = ["user", "scope", "meters", "expires_at"]
        return made if obj is None else ["prefix", *made, "revoked_at", "last_used_at", "created_at"]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        # The form's object becomes the key made (its meters are saved to it next, by the form).
        key, text = create_key(user=obj.user, scope=obj.scope)
        key.expires_at = obj.expires_at
        key.save(update_fields=["expires_at"])
        obj.pk, obj.prefix, obj.digest, obj.created_at = key.pk, key.prefix, key.digest, key.created_at
        obj._state.adding = False
        messages.warning(request, f"The new key, shown this once: {text}")

    @admin.action(description="Revoke the selected keys (they stop working at once)")
    def revoke(self, request, queryset):
        revoked = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{revoked} key(s) revoked.")
