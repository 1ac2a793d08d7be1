"""Docker plumbing for the image tests: a Docker engine on this machine, a stand-in for the base
image made from Debian's packages (no registry can be reached here), the project's image, and
containers that are always removed.

Everything about the machine (its apt sources, its pip settings, its CA bundle) is read here at test
time, so that no package index is named in the repository. Of pip's settings the build needs only
the CA bundle (tried: without it pip in the build finds no versions; with it, every wheel installs);
an index URL is passed on too where a machine sets one.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Bridge and iptables off: containers use the host's network only, so nothing is addressed outside
# 127.0.0.1 and the machine's firewall is left alone.
DOCKERD_COMMAND = ["dockerd", "--bridge=none", "--iptables=false", "--ip-masq=false",
                   "--pidfile", "/run/meterusage-dockerd.pid"]
DOCKERD_LOG = Path("/var/log/meterusage-dockerd.log")
# Outside the checkout, so that it outlives clones and worktrees.
CACHE = Path(os.environ.get("METERUSAGE_DOCKER_CACHE", "/var/cache/meterusage-docker"))

BASE_IMAGE = "python:3.11-slim-bookworm"
BASE_SUITE = "bookworm"
BASE_PACKAGES = ["python3", "python3-venv", "python-is-python3", "ca-certificates"]
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# The stand-in carries the key of what it was made from.
KEY_LABEL = "org.meterusage.stand-in-key"


class DockerError(RuntimeError):
    pass


def docker(*args: str, timeout: float = 120, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run the docker CLI; a failure raises DockerError with its output."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise DockerError(f"docker {' '.join(args)} exited with {result.returncode}:\n"
                          f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result


def engine_answers() -> bool:
    return docker("version", "--format", "{{.Server.Version}}", check=False, timeout=30).returncode == 0


def start_dockerd(timeout: float = 60) -> None:
    """Start dockerd for good, detached: it is cheap to leave running, and later runs find it."""
    subprocess.run(["sh", "-c", f'{" ".join(DOCKERD_COMMAND)} >>"$1" 2>&1 </dev/null &', "sh", str(DOCKERD_LOG)],
                   check=True, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not engine_answers():
        if time.monotonic() > deadline:
            raise DockerError(f"dockerd did not answer within {timeout:g}s; see {DOCKERD_LOG}:\n{log_tail(DOCKERD_LOG)}")
        time.sleep(0.5)


def log_tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def image_labels(image: str) -> dict[str, str] | None:
    """The image's labels ({} when it has none), or None when there is no such image."""
    result = docker("image", "inspect", "--format", "{{json .Config.Labels}}", image, check=False)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout) or {}


def image_size(image: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", image).stdout)


# --- The stand-in base image ---------------------------------------------------------------------


def apt_source_lines(suite: str = BASE_SUITE) -> list[str]:
    """The machine's enabled apt sources of `suite` (and its -updates, -security), one-line style."""
    etc = Path("/etc/apt")
    lines = []
    for path in [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]:
        if path.is_file():
            lines += [line.strip() for line in path.read_text().splitlines() if line.strip().startswith("deb ")]
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        lines += deb822_as_lines(path.read_text())
    return [line for line in lines if re.fullmatch(rf"{suite}([-/].*)?", suite_of(line))]


def suite_of(line: str) -> str:
    words = re.sub(r"\[[^]]*\]", "", line).split()
    return words[2] if len(words) > 2 else ""


def deb822_as_lines(text: str) -> list[str]:
    """`deb` entries of a deb822 .sources file as one-line entries (mmdebstrap takes either)."""
    lines = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^([\w-]+):\s*(.*)$", stanza, re.M))
        if "deb" not in fields.get("Types", "").split() or fields.get("Enabled", "yes") == "no":
            continue
        options = f"[signed-by={fields['Signed-By']}] " if fields.get("Signed-By", "").startswith("/") else ""
        for uri in fields.get("URIs", "").split():
            for suite in fields.get("Suites", "").split():
                lines.append(f"deb {options}{uri} {suite} {fields.get('Components', 'main')}")
    return lines


def pip_settings() -> dict[str, str]:
    """The machine's pip configuration as pip itself reads it (files, then PIP_* variables)."""
    result = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60)
    settings: dict[str, str] = {}
    for scope, key, value in re.findall(r"^([^.\s]*)\.([\w-]+)='(.*)'$", result.stdout, re.M):
        if scope == ":env:" or key not in settings:  # the environment wins over the files
            settings[key] = value
    return settings


def pip_conf_for_build(settings: dict[str, str]) -> str:
    """The part of pip's settings that reaches a package index from inside a build: index URLs over
    the network. Local folders and file: URLs (find-links, constraints) do not exist in the build."""
    lines = []
    for key in ("index-url", "extra-index-url", "trusted-host"):
        values = [v for v in settings.get(key, "").split() if key == "trusted-host" or v.startswith(("http://", "https://"))]
        if values:
            lines.append(f"{key} = {' '.join(values)}")
    return "[global]\n" + "\n".join(lines) + "\n" if lines else ""


def stand_in_context() -> dict[str, bytes]:
    """Files of the stand-in's build context besides base.tar: the Dockerfile, the CA bundle pip uses
    here (the package index is reached through this machine's TLS setup) and, if the machine sets an
    index, a pip.conf naming it."""
    settings = pip_settings()
    ca_bundle = Path(settings.get("cert") or SYSTEM_CA_BUNDLE)
    files = {"ca.crt": ca_bundle.read_bytes()}
    dockerfile = ["FROM scratch", "ADD base.tar /", "COPY ca.crt /etc/ssl/certs/ca-certificates.crt"]
    if pip_conf := pip_conf_for_build(settings):
        files["pip.conf"] = pip_conf.encode()
        dockerfile.append("COPY pip.conf /etc/pip.conf")
    files["Dockerfile"] = "\n".join([*dockerfile, 'CMD ["python3"]', ""]).encode()
    return files


def digest(*parts: bytes | str) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode() if isinstance(part, str) else part)
        hasher.update(b"\0")
    return hasher.hexdigest()[:16]


def base_tarball(sources: list[str]) -> Path:
    """The Debian root file system of the stand-in, cached under CACHE by what it is made from."""
    key = digest(BASE_SUITE, *BASE_PACKAGES, *sources)
    tarball = CACHE / f"base-{key}.tar"
    if tarball.exists():
        return tarball
    install_mmdebstrap()
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial.tar")
    # No source lines found: mmdebstrap's own default mirrors.
    command = ["mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", BASE_SUITE, str(partial), *sources]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise DockerError(f"mmdebstrap exited with {result.returncode}:\n{result.stderr[-3000:]}")
    partial.rename(tarball)
    for stale in CACHE.glob("base-*.tar"):  # superseded tarballs: one is enough
        if stale != tarball:
            stale.unlink()
    return tarball


def install_mmdebstrap() -> None:
    if shutil.which("mmdebstrap"):
        return
    for command in (["apt-get", "install", "-y", "-qq", "mmdebstrap"], ["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "mmdebstrap"]):
        if subprocess.run(command, capture_output=True, timeout=600).returncode == 0 and shutil.which("mmdebstrap"):
            return
    raise DockerError("mmdebstrap is not installed and apt-get could not install it")


def ensure_base_image() -> str:
    """Tag a stand-in for BASE_IMAGE made from Debian's packages, unless it is there already: the
    real image (pulled where a registry answers) or the stand-in made from the same inputs."""
    sources = apt_source_lines()
    context = stand_in_context()
    key = digest(*sources, *(name.encode() + content for name, content in sorted(context.items())))
    labels = image_labels(BASE_IMAGE)
    if labels is not None and labels.get(KEY_LABEL) in (None, key):
        return "pulled" if KEY_LABEL not in labels else "reused"
    tarball = base_tarball(sources)
    with tempfile.TemporaryDirectory(prefix="meterusage-stand-in-") as folder:
        os.link(tarball, Path(folder) / "base.tar")
        for name, content in context.items():
            (Path(folder) / name).write_bytes(content)
        build(folder, BASE_IMAGE, {KEY_LABEL: key})
    return "built"


# --- The project's image and its containers ------------------------------------------------------


def build(context: str | Path, tag: str, labels: dict[str, str] | None = None, timeout: float = 1200) -> None:
    """`docker build` with the classic builder on the host's network; the image it replaces is removed
    (a prune would remove the build stage too, which is the cache of the dependencies' layer)."""
    label_args = [arg for name, value in (labels or {}).items() for arg in ("--label", f"{name}={value}")]
    previous = image_id(tag)
    docker("build", "--network", "host", "--tag", tag, *label_args, str(context), timeout=timeout,
           env={**os.environ, "DOCKER_BUILDKIT": "0"})
    if previous and previous != image_id(tag):
        docker("image", "rm", previous, check=False)  # still in use (a container, a child image): kept


def image_id(image: str) -> str | None:
    result = docker("image", "inspect", "--format", "{{.Id}}", image, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


class Containers:
    """Containers started with the image, all removed by remove_all() whatever became of them."""

    def __init__(self, image: str, prefix: str):
        self.image = image
        self.prefix = prefix
        self.names: list[str] = []

    def run(self, role: str, env: dict[str, str], *options: str, detach: bool = False,
            timeout: float = 300) -> subprocess.CompletedProcess:
        name = f"{self.prefix}-{role}-{len(self.names) + 1}"
        self.names.append(name)
        env_args = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
        return docker("run", "--name", name, "--network", "host", *env_args, *options,
                      *(["--detach"] if detach else []), self.image, role, check=False, timeout=timeout)

    def last(self) -> str:
        return self.names[-1]

    def remove_all(self) -> None:
        if self.names:
            docker("rm", "--force", "--volumes", *self.names, check=False)


def state(container: str) -> dict:
    return json.loads(docker("inspect", "--format", "{{json .State}}", container).stdout)


def logs(container: str) -> str:
    result = docker("logs", container, check=False)
    return result.stdout + result.stderr


def wait_until_healthy(container: str, timeout: float = 180) -> dict:
    """Wait for Docker's own health status to turn `healthy`; fails early if the container dies or
    turns `unhealthy`. Returns the container's state."""
    deadline = time.monotonic() + timeout
    while True:
        current = state(container)
        health = current.get("Health", {})
        if health.get("Status") == "healthy":
            return current
        if not current["Running"] or health.get("Status") == "unhealthy" or time.monotonic() > deadline:
            probes = [entry.get("Output", "").strip() for entry in health.get("Log", [])][-3:]
            raise DockerError(f"{container} is {health.get('Status') or current['Status']} (probes: {probes}):\n"
                              f"{logs(container)[-3000:]}")
        time.sleep(1)
