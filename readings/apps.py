from django.apps import AppConfig


class ReadingsConfig(AppConfig):
    name = "readings"

    def ready(self):
        from readings import checks  # noqa: F401  (registers the system checks)
