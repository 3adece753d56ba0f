"""Passwords are hidden in every form a connection string takes."""

from __future__ import annotations

import pytest

from pgmill.redact import redact


@pytest.mark.parametrize(("text", "shown"), [
    ("postgresql://u:s3cret@db:5432/app", "postgresql://u:***@db:5432/app"),
    ("host=db user=u password=s3cret dbname=app", "host=db user=u password=*** dbname=app"),
    ("host=db user=u password = s3cret dbname=app", "host=db user=u password = *** dbname=app"),
    ("host=db password='my secret' dbname=app", "host=db password=*** dbname=app"),
    ("host=db PASSWORD='it\\'s' dbname=app", "host=db PASSWORD=*** dbname=app"),
    ("postgresql://db/app?user=u&password=s3cret&sslmode=require",
     "postgresql://db/app?user=u&password=***&sslmode=require"),
])
def test_redact_hides_the_password(text: str, shown: str) -> None:
    assert redact(text) == shown
    assert "s3cret" not in redact(text) and "secret'" not in redact(text)
