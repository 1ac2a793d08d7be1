from django.urls import path
from rest_framework.routers import DefaultRouter

from gateway.api import views

app_name = "api"



class Router(DefaultRouter):
    # Formats are chosen with ?format= or Accept, not with .json suffixes.
    include_format_suffixes = False


router = Router()
router.register("meters", views.MeterViewSet, basename="meter")
router.register("import-runs", views.ImportRunViewSet, basename="importrun")
router.register("rejected-messages", views.RejectedMessageViewSet, basename="rejectedmessage")

urlpatterns = [
    path("meters/<slug:meter>/readings/", views.ReadingsView.as_view(), name="meter-readings"),
    path("meters/<slug:meter>/aggregates/", views.AggregatesView.as_view(), name="meter-aggregates"),
    path("meters/<slug:meter>/completeness/", views.CompletenessView.as_view(), name="meter-completeness"),
    path("meters/<slug:meter>/changes/", views.ChangesView.as_view(), name="meter-changes"),
    *router.urls,
]
