"""MQTT credentials of devices and of the consumer, in Mosquitto's password file.

A device's username is its meter's name; the broker's ACL (deploy/mosquitto-acl.conf) lets it
publish only to `meterusage/v1/meters/<its name>/readings`. The consumer (`ingest_mqtt`) has a
credential of its own that may read every meter's topic. Lines are written in the format of
Mosquitto 2's `mosquitto_passwd`: PBKDF2-HMAC-SHA512, `$7$<iterations>$<salt>$<hash>` in base64.
Mosquitto reads the file at start and again on SIGHUP, the second time as its own user: a rewrite
keeps the file's owner, so that a broker that could read it still can.
"""
import base64
import hashlib
import os
import secrets
import tempfile
from pathlib import Path

ITERATIONS = 101  # mosquitto_passwd's own
SALT_BYTES = 12


def password_line(username: str, password: str, *, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS)
    return f"{username}:$7${ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def usernames(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line.split(":", 1)[0] for line in path.read_text().splitlines() if ":" in line]


def set_credential(path: Path, username: str, password: str | None = None) -> str:
    """Give `username` `password` (by default a new random one) in the file at `path` (made if
    missing; its other lines kept); returns the password, which is not kept anywhere else."""
    password = password if password is not None else secrets.token_urlsafe(24)
    _rewrite(path, username, password_line(username, password))
    return password


def remove_credential(path: Path, username: str) -> bool:
    """Remove `username`'s line; whether there was one."""
    if username not in usernames(path):
        return False
    _rewrite(path, username, None)
    return True


def _rewrite(path: Path, username: str, line: str | None) -> None:
    kept = [old for old in (path.read_text().splitlines() if path.exists() else []) if old.split(":", 1)[0] != username]
    if line is not None:
        kept.append(line)
    # Written whole and renamed over the old file: the broker never reads half of it.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as out:
        out.write("".join(f"{entry}\n" for entry in kept))
    os.chmod(temporary, 0o600)
    if path.exists():
        _keep_owner(path, temporary)
    os.replace(temporary, path)


def _keep_owner(path: Path, temporary: str) -> None:
    old = path.stat()
    try:
        os.chown(temporary, old.st_uid, old.st_gid)
    except PermissionError:
        pass  # only root may give a file away; anyone else's rewrite is their own
