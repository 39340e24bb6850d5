"""Every form of credential in a URL is masked before it is printed or logged."""

from __future__ import annotations

import pytest

from migrator.urls import obfuscate_url, redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:p@ss/w@h/db", "postgresql://u:***@h/db"),
        ("redis://:a@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("postgresql://h/db?user=bob&password=x", "postgresql://h/db?user=bob&password=***"),
        (
            "postgresql://h/db?sslpassword=ab&sslmode=require",
            "postgresql://h/db?sslpassword=***&sslmode=require",
        ),
        (
            "s3://b/x?aws_secret_access_key=k&token=t",
            "s3://b/x?aws_secret_access_key=***&token=***",
        ),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("/srv/x\x1b[31m", "/srv/x\\x1b[31m"),
    ],
)
def test_obfuscate_url(url: str, shown: str) -> None:
    assert obfuscate_url(url) == shown


def test_short_secrets_are_masked_where_they_stand_alone() -> None:
    assert redact("password q7 in 'q7' and aq7b", ["q7"]) == "password *** in '***' and aq7b"
    assert redact("hunter2 and hunter2x", ["hunter2"]) == "*** and ***x"
