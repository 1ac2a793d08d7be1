"""Running the import command as a test would: captured output, errors as CommandError."""
from io import StringIO

from django.core.management import call_command

HEADER = "time,meterusage\n"


def import_file(*paths, **options) -> str:
    """Run import_readings on `paths`; returns what it printed."""
    out = StringIO()
    call_command("import_readings", *map(str, paths), stdout=out, stderr=StringIO(), **options)
    return out.getvalue()
