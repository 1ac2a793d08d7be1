from django.core.management.base import BaseCommand, CommandError

from grpc_api import protos


class Command(BaseCommand):
    help = "Generate the Python gRPC code in grpc_api/gen/ from protos/ (or check that it is current)."
    # It must run when the generated code is stale or broken, which the checks would trip on.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--check", action="store_true",
            help="Exit with an error if the generated code differs from what protos/ gives; write nothing.",
        )

    def handle(self, *args, check, **options):
        try:
            if check:
                stale = protos.stale_files()
                if stale:
                    raise CommandError(
                        "Generated gRPC code is stale (run `manage.py compileprotos`): " + ", ".join(stale)
                    )
                self.stdout.write("Generated gRPC code is current.")
                return
            written = protos.write()
        except protos.ProtocError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Wrote {len(written)} files to grpc_api/gen/"))
