"""aiobotocore tests: run by ``make test-aio`` in ``.venv-aio`` (aiobotocore pins an older
botocore). The shared fixtures of tests/conftest.py (moto_url, recorder, registry) apply."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

aiobotocore_session = pytest.importorskip("aiobotocore.session")

import evobs  # noqa: E402


@pytest.fixture
def aio_session() -> Any:
    session = aiobotocore_session.get_session()
    session.set_credentials("testing", "testing")
    return session


@pytest.fixture
def aio_instrumented(aio_session: Any, recorder: Any, registry: Any) -> Iterator[Any]:
    handle = evobs.instrument(aio_session, tracer_provider=recorder.provider, registry=registry)
    try:
        yield handle
    finally:
        handle.uninstrument()
