"""Celery's message signing (its ``auth`` serializer), opt-in through the CELERY_SIGNING_* settings.

Every process that sends a task (``migrator enqueue``, beat, a worker sending a chord body or
the next stage) signs it with its key; a worker checks the signature against the certificates
in the store before it decodes the message, and accepts task messages signed only. Results and
events stay JSON. The files are checked here, before Celery reads them, so a mistake is one
clear error naming the setting and the path; the key's content is never printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery
from celery.exceptions import ImproperlyConfigured, SecurityError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from migrator.errors import SigningConfigError
from migrator.settings import Settings

SIGNED_SERIALIZER = "auth"
SIGNING_DIGEST = "sha256"
# What ``setup_security`` leaves decodable besides the signed serializer it registers after
# disabling the rest: JSON, for results (task messages must still be "auth": accept_content).
DECODABLE_SERIALIZERS = {"json"}

_SETTINGS = {
    "key_file": "CELERY_SIGNING_KEY_FILE",
    "cert_file": "CELERY_SIGNING_CERT_FILE",
    "cert_store": "CELERY_SIGNING_CERT_STORE",
}


@dataclass(frozen=True)
class SigningFiles:
    """This process's private key and certificate, and the folder of trusted certificates."""

    key_file: Path
    cert_file: Path
    cert_store: Path


def signing_files(settings: Settings) -> SigningFiles | None:
    """The checked signing files; None when signing is off (none of the three settings set).

    Raises ``SigningConfigError`` when only some are set, or a file is missing, unreadable, not
    what its setting says, or when the certificate does not match the key or is not trusted by
    the store (this process's own chord bodies would then be refused)."""
    given = {
        "key_file": settings.celery_signing_key_file,
        "cert_file": settings.celery_signing_cert_file,
        "cert_store": settings.celery_signing_cert_store,
    }
    if all(path is None for path in given.values()):
        return None
    missing = [_SETTINGS[name] for name, path in given.items() if path is None]
    if missing:
        present = [_SETTINGS[name] for name, path in given.items() if path is not None]
        raise SigningConfigError(
            f"message signing needs {', '.join(missing)} as well as {', '.join(present)}: "
            "every process signs what it sends and checks what it receives"
        )
    files = SigningFiles(**{name: Path(str(path)) for name, path in given.items()})
    key = _load_key(files.key_file)
    cert = _load_cert(files.cert_file, _SETTINGS["cert_file"])
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        raise SigningConfigError(
            f"CELERY_SIGNING_CERT_FILE {files.cert_file} is not the certificate of "
            f"CELERY_SIGNING_KEY_FILE {files.key_file}"
        )
    trusted = _store_fingerprints(files.cert_store)
    if cert.fingerprint(hashes.SHA256()) not in trusted:
        raise SigningConfigError(
            f"CELERY_SIGNING_CERT_STORE {files.cert_store} does not hold CELERY_SIGNING_CERT_FILE "
            f"{files.cert_file}: messages this process signs would be refused"
        )
    return files


def signing_config(files: SigningFiles) -> dict[str, Any]:
    """The Celery settings of signed task messages, for ``app.conf.update``.

    ``accept_content`` must be exactly ``["auth"]`` (``setup_security`` refuses anything else);
    results and events keep their own JSON-only settings."""
    return {
        "task_serializer": SIGNED_SERIALIZER,
        "accept_content": [SIGNED_SERIALIZER],
        "result_serializer": "json",
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "security_key": str(files.key_file),
        "security_certificate": str(files.cert_file),
        "security_cert_store": str(files.cert_store),
        "security_digest": SIGNING_DIGEST,
    }


def enable_signing(app: Celery, files: SigningFiles) -> None:
    """Register the signing serializer (a process-wide registry: every app of this process)."""
    try:
        app.setup_security(
            allowed_serializers=DECODABLE_SERIALIZERS,
            key=str(files.key_file),
            cert=str(files.cert_file),
            store=str(files.cert_store),
            digest=SIGNING_DIGEST,
            serializer="json",
        )
    except (ImproperlyConfigured, SecurityError, OSError) as exc:
        # Celery's messages name certificates and files, never key material.
        raise SigningConfigError(f"message signing could not be set up: {exc}") from None


def _read(path: Path, setting: str) -> bytes:
    if not path.is_file():
        raise SigningConfigError(f"{setting} {path} is not a file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningConfigError(f"{setting} {path} cannot be read ({exc.strerror})") from None


def _load_key(path: Path) -> rsa.RSAPrivateKey:
    setting = _SETTINGS["key_file"]
    try:
        key = serialization.load_pem_private_key(_read(path, setting), password=None)
    except (ValueError, TypeError):
        # The parser's message is dropped: nothing of the file may reach a log.
        raise SigningConfigError(
            f"{setting} {path} is not an unencrypted PEM private key"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SigningConfigError(f"{setting} {path} is not an RSA key (Celery signs with RSA)")
    return key


def _load_cert(path: Path, setting: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path, setting))
    except ValueError:
        raise SigningConfigError(f"{setting} {path} is not a PEM certificate") from None


def _public_der(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _store_fingerprints(store: Path) -> set[bytes]:
    setting = _SETTINGS["cert_store"]
    if not store.is_dir():
        raise SigningConfigError(f"{setting} {store} is not a directory")
    # Celery reads every file of the folder as a certificate; so does this check.
    files = sorted(p for p in store.iterdir() if not p.name.startswith("."))
    if not files:
        raise SigningConfigError(f"{setting} {store} holds no certificate")
    return {_load_cert(p, setting).fingerprint(hashes.SHA256()) for p in files}
