"""``--web.config.file``: TLS and basic auth for the exporter's HTTP front.

The file has the shape every Prometheus exporter reads (the exporter-toolkit's web
configuration), restricted to what is implemented here:

    tls_server_config:
      cert_file: /etc/linborg/tls.crt
      key_file: /etc/linborg/tls.key
      client_ca_file: /etc/linborg/ca.crt   # optional: then clients must present a certificate
      min_version: TLS12                    # optional: TLS12 (default) or TLS13
    basic_auth_users:
      prometheus: $2y$10$...                # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')

Every problem is reported at once, and an unknown key is an error, not silently ignored.
"""

from __future__ import annotations

import base64
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from linborg.contract import ContractError

TLS_KEYS = {"cert_file", "key_file", "client_ca_file", "min_version"}
MIN_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


@dataclass
class WebConfig:
    """A checked web configuration: an SSL context (or None) and the basic-auth users."""

    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    #: bcrypt is slow on purpose: remember digests of credentials already checked.
    _ok: set[bytes] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def authorized(self, header: str | None) -> bool:
        """Return whether an ``Authorization`` header passes (always, with no users)."""
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if hashed is None:
            return False
        import hashlib

        digest = hashlib.sha256(hashed + b"\0" + password.encode()).digest()
        with self._lock:
            if digest in self._ok:
                return True
        import bcrypt

        try:
            if not bcrypt.checkpw(password.encode(), hashed):
                return False
        except ValueError:
            return False
        with self._lock:
            self._ok.add(digest)
        return True


def load_web_config(path: str | Path) -> WebConfig:
    """Read and check a web configuration file; raise ContractError listing every problem."""
    path = Path(path)
    where = f"--web.config.file {path}"
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ContractError(f"{where}: cannot be read ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ContractError(f"{where}: not valid YAML ({err})") from None
    if not isinstance(doc, dict):
        raise ContractError(f"{where}: expected a mapping")
    problems = []
    for key in sorted(set(doc) - {"tls_server_config", "basic_auth_users"}):
        problems.append(f"{key}: unknown key (this exporter reads tls_server_config and "
                        "basic_auth_users)")  # fmt: skip
    config = WebConfig()
    tls = doc.get("tls_server_config")
    if tls is not None:
        if not isinstance(tls, dict):
            problems.append("tls_server_config: expected a mapping")
        else:
            config.tls = _tls_context(tls, problems)
    users = doc.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        problems.append("basic_auth_users: expected a mapping of user -> bcrypt hash")
        users = {}
    for user, hashed in users.items():
        text = str(hashed)
        if not text.startswith(("$2a$", "$2b$", "$2y$")):
            problems.append(f"basic_auth_users.{user}: not a bcrypt hash")
            continue
        config.users[str(user)] = text.encode()
    if problems:
        raise ContractError(f"{where}:\n  " + "\n  ".join(problems))
    return config


def _tls_context(tls: dict, problems: list[str]) -> ssl.SSLContext | None:
    for key in sorted(set(tls) - TLS_KEYS):
        problems.append(f"tls_server_config.{key}: unknown key")
    cert, key = tls.get("cert_file"), tls.get("key_file")
    if not cert or not key:
        problems.append("tls_server_config: cert_file and key_file are both required")
        return None
    version = tls.get("min_version", "TLS12")
    if version not in MIN_VERSIONS:
        problems.append(f"tls_server_config.min_version: {version!r} (use TLS12 or TLS13)")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_VERSIONS[version]
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        problems.append(f"tls_server_config: cannot load {cert} / {key} ({err})")
        return None
    ca = tls.get("client_ca_file")
    if ca:
        try:
            context.load_verify_locations(ca)
        except (OSError, ssl.SSLError) as err:
            problems.append(f"tls_server_config.client_ca_file: cannot load {ca} ({err})")
            return None
        context.verify_mode = ssl.CERT_REQUIRED
    return context
