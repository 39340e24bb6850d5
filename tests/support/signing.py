"""Throwaway RSA keys and self-signed certificates for Celery's message signing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

KEY_BITS = 2048


@dataclass(frozen=True)
class Signer:
    """A key, its certificate, and a store folder trusting that certificate alone."""

    key_file: Path
    cert_file: Path
    cert_store: Path
    key_body: str  # a line from inside the key's PEM, to look for in output

    def env(self) -> dict[str, str]:
        return {
            "CELERY_SIGNING_KEY_FILE": str(self.key_file),
            "CELERY_SIGNING_CERT_FILE": str(self.cert_file),
            "CELERY_SIGNING_CERT_STORE": str(self.cert_store),
        }


def make_signer(folder: Path, name: str) -> Signer:
    """A fresh key and a one-day self-signed certificate for ``name`` under ``folder``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / f"{name}.key"
    key_file.write_bytes(key_pem)
    key_file.chmod(0o600)
    cert_file = folder / f"{name}.pem"
    cert_file.write_bytes(cert_pem)
    store = folder / f"{name}-trusted"
    store.mkdir()
    (store / f"{name}.pem").write_bytes(cert_pem)
    return Signer(key_file, cert_file, store, key_pem.decode().splitlines()[1])
