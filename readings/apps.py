from django.apps import AppConfig


class ReadingsConfig(AppConfig):
    name = "readings"

    def ready(self):
        from django.db.backends.signals import connection_created

        from readings import checks  # noqa: F401  (registers the system checks)
        from readings.sources.sql.citus import configure_connection

        connection_created.connect(configure_connection, dispatch_uid="readings.citus")
