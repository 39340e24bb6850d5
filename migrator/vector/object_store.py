"""LanceDB datasets on object storage: ``s3://bucket/prefix`` (and ``gs://``, ``az://``).

Whoever registers a dataset chooses its URL, so the URL names a place and nothing else: a bucket
and a key prefix. User info, a port, a query or a fragment are refused (that is where
credentials and endpoints hide in such URLs), and the place must lie under an ``s3://``
(``gs://``, ``az://``) prefix the operator listed in VECTOR_STORE_ROOTS. Credentials and the
endpoint come from settings or the store's standard environment (``AWS_*``,
``GOOGLE_*``, ``AZURE_*``), never from the URL, the control plane or a task message; plain HTTP
only with VECTOR_STORE_ALLOW_HTTP.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

from migrator.errors import BadDatasetURLError, ObjectStoreSettingsError
from migrator.settings import Settings
from migrator.urls import escape_controls

# The schemes LanceDB (through Lance's object_store) opens natively.
REMOTE_SCHEMES = ("s3", "gs", "az")
# Bucket (S3, GCS) and container (Azure) names: lower case, digits, dots and dashes.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
# Standard variables whose values are secrets, removed from every output like settings' own.
SECRET_ENVIRONMENT = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_STORAGE_TOKEN",
)
# Where the AWS SDKs and Lance look for an endpoint override, most specific first.
AWS_ENDPOINT_ENVIRONMENT = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")


@dataclass(frozen=True)
class RemoteLocation:
    """A bucket and a key prefix in one object store; ``key`` has no leading or trailing
    slash and may be empty (a whole bucket, only as a root)."""

    scheme: str
    bucket: str
    key: str

    @property
    def url(self) -> str:
        base = f"{self.scheme}://{self.bucket}"
        return f"{base}/{self.key}" if self.key else base

    @property
    def server_key(self) -> str:
        """What per-server concurrency counts by: the bucket."""
        return f"{self.scheme}://{self.bucket}"

    def contains(self, other: RemoteLocation) -> bool:
        """True when ``other`` lies strictly inside this prefix (whole segments)."""
        if (other.scheme, other.bucket) != (self.scheme, self.bucket) or other.key == self.key:
            return False
        return not self.key or other.key.startswith(self.key + "/")


def is_remote(url: str) -> bool:
    scheme, sep, _ = url.partition("://")
    return bool(sep) and scheme.lower() in REMOTE_SCHEMES


def parse_remote(url: str) -> RemoteLocation:
    """Validate an object-store URL; ``BadDatasetURLError`` names what is wrong with it."""
    if any(unicodedata.category(c) == "Cc" for c in url):
        raise BadDatasetURLError(
            f"lancedb URL {escape_controls(url)!r} contains control characters"
        )
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme not in REMOTE_SCHEMES:
        raise BadDatasetURLError(
            f"lancedb URL scheme {scheme!r} is not one of {', '.join(REMOTE_SCHEMES)}"
        )
    # Never echo the part after '@', '?' or '#': it may be the very credential being refused.
    if "@" in rest.split("/", 1)[0]:
        raise BadDatasetURLError(
            f"lancedb URL {scheme}://... carries user info; credentials come from settings or "
            "the store's environment, never from a dataset URL"
        )
    if "?" in rest or "#" in rest:
        raise BadDatasetURLError(
            f"lancedb URL {scheme}://... carries a query or fragment; options and credentials "
            "come from settings or the store's environment, never from a dataset URL"
        )
    parts = urlsplit(f"{scheme}://{rest}")
    bucket = parts.netloc
    if not _BUCKET.match(bucket):
        raise BadDatasetURLError(
            f"lancedb URL {escape_controls(url)!r}: {bucket!r} is not a bucket name (no port, "
            "no endpoint: the endpoint comes from settings)"
        )
    # One leading slash separates bucket and key; trailing ones are dropped. Anything else
    # empty ('//') is refused: stores keep such keys apart, readers of the URL would not.
    key = parts.path.removeprefix("/").rstrip("/")
    segments = key.split("/") if key else []
    if any(s in ("", ".", "..") or "\\" in s for s in segments):
        raise BadDatasetURLError(
            f"lancedb URL {escape_controls(url)!r} has an empty, '.' or '..' path segment"
        )
    return RemoteLocation(scheme, bucket, "/".join(segments))


def remote_roots(settings: Settings) -> list[RemoteLocation]:
    """VECTOR_STORE_ROOTS' object-store prefixes (a bad entry raises, naming it)."""
    listed = [r.strip() for r in settings.vector_store_roots.split(",") if r.strip()]
    if not listed:
        listed = [settings.vector_db_url]
    return [parse_remote(r) for r in listed if is_remote(r)]


def require_under_remote_roots(
    location: RemoteLocation, settings: Settings, *, dataset: str
) -> None:
    """Refuse a location that is not strictly inside a listed prefix."""
    roots = remote_roots(settings)
    if not any(root.contains(location) for root in roots):
        shown = ", ".join(r.url for r in roots) or "no object-store prefix"
        raise BadDatasetURLError(
            f"dataset {dataset}: lancedb location {location.url} is outside "
            f"VECTOR_STORE_ROOTS ({shown})"
        )


def storage_options(settings: Settings, location: RemoteLocation) -> dict[str, str]:
    """The options LanceDB opens ``location`` with, from settings and the environment only.

    ``allow_http`` is always given, so VECTOR_STORE_ALLOW_HTTP decides, not an ``AWS_ALLOW_HTTP``
    that Lance would otherwise read from the environment. What is not given here (credentials
    left empty in settings, GCS and Azure options) Lance reads from the standard environment.
    """
    options = {"allow_http": "true" if settings.vector_store_allow_http else "false"}
    if location.scheme != "s3":
        return options
    endpoint = s3_endpoint(settings)
    if endpoint:
        options["aws_endpoint"] = endpoint
    if settings.vector_store_s3_region:
        options["aws_region"] = settings.vector_store_s3_region
    secret = settings.vector_store_s3_secret_access_key.get_secret_value()
    if bool(settings.vector_store_s3_access_key_id) != bool(secret):
        raise ObjectStoreSettingsError(
            "VECTOR_STORE_S3_ACCESS_KEY_ID and VECTOR_STORE_S3_SECRET_ACCESS_KEY are set together "
            "or not at all (empty: the standard AWS environment)"
        )
    if secret:
        options["aws_access_key_id"] = settings.vector_store_s3_access_key_id
        options["aws_secret_access_key"] = secret
    return options


def s3_endpoint(settings: Settings) -> str:
    """The S3 endpoint override (settings, else the AWS environment), checked: an ``http``
    endpoint needs VECTOR_STORE_ALLOW_HTTP, and an endpoint carries no credentials."""
    endpoint = settings.vector_store_s3_endpoint.strip() or next(
        (os.environ[n].strip() for n in AWS_ENDPOINT_ENVIRONMENT if os.environ.get(n)), ""
    )
    if not endpoint:
        return ""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ObjectStoreSettingsError(
            f"S3 endpoint {escape_controls(endpoint.split('@')[-1])!r} is not an http(s) URL"
        )
    if parts.username or parts.password or parts.query:
        raise ObjectStoreSettingsError(
            "the S3 endpoint carries user info or a query; credentials go in "
            "VECTOR_STORE_S3_ACCESS_KEY_ID/SECRET_ACCESS_KEY or the AWS environment"
        )
    if parts.scheme == "http" and not settings.vector_store_allow_http:
        raise ObjectStoreSettingsError(
            f"S3 endpoint {endpoint} is plain HTTP; set VECTOR_STORE_ALLOW_HTTP=true to allow "
            "it (a local S3-compatible server), or use https"
        )
    return endpoint


def environment_secrets() -> list[str]:
    """The values of the standard object-store secret variables set in this process."""
    return [os.environ[name] for name in SECRET_ENVIRONMENT if os.environ.get(name)]
