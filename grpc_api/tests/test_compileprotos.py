"""The committed gRPC code is what protos/ gives, and --check notices when it is not."""
import shutil

import pytest
from django.core.management import CommandError, call_command

from grpc_api import protos


def test_generated_code_is_current(capsys):
    call_command("compileprotos", "--check")

    assert "Generated gRPC code is current." in capsys.readouterr().out


def test_check_fails_on_a_changed_proto(tmp_path, monkeypatch):
    changed = tmp_path / "protos"
    shutil.copytree(protos.PROTO_ROOT, changed)
    proto = changed / "meterusage" / "v1" / "meter_usage.proto"
    proto.write_text(proto.read_text().replace("string unit = 3;", "string unit = 3;\n  string site = 99;"))
    monkeypatch.setattr(protos, "PROTO_ROOT", changed)

    with pytest.raises(CommandError, match=r"stale .*meterusage/v1/meter_usage_pb2\.py"):
        call_command("compileprotos", "--check")


def test_generated_modules_import_through_the_package():
    text = (protos.GENERATED_ROOT / "meterusage" / "v1" / "meter_usage_pb2_grpc.py").read_text()

    assert "from grpc_api.gen.meterusage.v1 import meter_usage_pb2" in text
    assert "\nfrom meterusage" not in text
