"""Property-based, over real HTTP: credentials in every textual form, inside generated
text, reach no span producer, log record or metric sample.

Hypothesis draws a form (``tests/secret_forms.py``), the credential values in it and the
text around it. The fault server puts that text in S3 error codes and messages (a
retried attempt, then the final error) of an ``upload_fileobj``; a user's progress
callback and a user's ``before-send`` handler raise exceptions quoting it, and the
client's own secret key and session token verbatim. Then the call span, its attempt
spans, the transfer's parent span, every log record (JSON and plain) and the whole
metric exposition are searched for the credentials, their starts and their ends.
"""

from __future__ import annotations

import io
import logging
import types
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.retries import standard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

import evobs
from evobs.demo.faults import Fault, FaultServer

from .conftest import SpanRecorder
from .secret_forms import END, FORMS, START, leaks, make_secret
from .test_secrets import Everything, span_text

OWN_KEY = "AKIAEVOBSOWNPROPS001"
OWN_SECRET = "evobsOwnSecretKey/For+Properties0123456"
OWN_TOKEN = "IQoJevobsOwnSessionTokenForProperties/+="

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
#: What may stand right before or after a credential in real text.
DELIMITERS = [" ", "\n", "\t", ", ", "; ", "(", ")", "&", "?", "{", "}", "[", "]", ": ", "= "]
#: Surrounding text: printable (it travels in an XML error body), without the markers, and
#: without capitals and digits (so no surrounding text holds the tail of a key id drawn
#: for another form, which would look like a leak).
AROUND = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Lu", "Nd"),
        blacklist_characters=UPPER,
    ),
    max_size=30,
).filter(lambda t: START not in t and END not in t)


class UserError(Exception):
    """What the user's callback and handler raise."""


@st.composite
def quoted(draw: Any) -> tuple[str, str, str]:
    """Generated text holding one credential form: ``(text, secret, key_id)``."""
    form = draw(st.sampled_from(sorted(FORMS)))
    secret = make_secret(draw(st.text(alphabet=B64, max_size=40)))
    key_id = draw(st.sampled_from(["AKIA", "ASIA"])) + draw(
        st.text(alphabet=UPPER, min_size=16, max_size=16)
    )
    before = draw(AROUND) + draw(st.sampled_from(DELIMITERS))
    after = draw(st.sampled_from(DELIMITERS)) + draw(AROUND)
    return before + FORMS[form](secret, key_id) + after, secret, key_id


class Env:
    """One instrumented session on the fault server, for every example of a test."""

    def __init__(self, moto_url: str) -> None:
        self.faults = FaultServer(upstream=moto_url).start()
        self.recorder = SpanRecorder()
        self.registry = CollectorRegistry()
        self.logs = Everything()
        session = boto3.Session(
            aws_access_key_id=OWN_KEY,
            aws_secret_access_key=OWN_SECRET,
            aws_session_token=OWN_TOKEN,
            region_name="us-east-1",
        )
        self.handle = evobs.instrument(
            session, tracer_provider=self.recorder.provider, registry=self.registry
        )
        self.s3 = session.client(
            "s3",
            endpoint_url=self.faults.url,
            config=Config(retries={"mode": "standard", "total_max_attempts": 2}),
        )
        self.bucket = f"props-{uuid.uuid4().hex[:12]}"
        self.s3.create_bucket(Bucket=self.bucket)
        #: What the user's handler raises with, set per example.
        self.raising = ""
        self.s3.meta.events.register("before-send.s3.ListBuckets", self._user_handler)

    def _user_handler(self, **_: Any) -> None:
        raise UserError(self.raising)

    def close(self) -> None:
        self.handle.uninstrument()
        self.faults.stop()

    def recorded(self) -> str:
        return "\n".join(
            [span_text(self.recorder), *self.logs.lines, generate_latest(self.registry).decode()]
        )


@pytest.fixture(scope="module")
def env(moto_url: str) -> Iterator[Env]:
    """The session, its logs and metrics; backoff jitter 0 (DESIGN 6) for the module."""
    log = logging.getLogger("evobs")
    level = log.level
    with pytest.MonkeyPatch.context() as patch:
        original = standard.ExponentialBackoff.__init__

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            kwargs["random"] = lambda: 0.0
            original(self, *args, **kwargs)

        patch.setattr(standard.ExponentialBackoff, "__init__", init)
        patch.setattr("botocore.retryhandler.random", types.SimpleNamespace(random=lambda: 0.0))
        environment = Env(moto_url)
        log.addHandler(environment.logs)
        log.setLevel(logging.DEBUG)
        try:
            yield environment
        finally:
            log.removeHandler(environment.logs)
            log.setLevel(level)
            environment.close()


PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@PROPERTY
@given(quoted(), quoted(), quoted(), quoted())
def test_no_form_reaches_any_signal(
    env: Env,
    in_retried_error: tuple[str, str, str],
    in_final_error: tuple[str, str, str],
    in_callback: tuple[str, str, str],
    in_handler: tuple[str, str, str],
) -> None:
    """Codes and messages of a retried and a final S3 error, a user's callback and a
    user's handler: the transfer parent, the call and attempt spans, the logs and the
    metrics hold no credential, nor the client's own secret key and token."""
    env.faults.reset()  # nothing left over from an example that failed half-way
    env.recorder.exporter.clear()
    env.logs.lines.clear()
    env.logs.events.clear()
    env.faults.script(
        [
            Fault.error(500, in_retried_error[0], in_retried_error[0]).on(method="PUT"),
            Fault.error(400, in_final_error[0], in_final_error[0]).on(method="PUT"),
        ]
    )
    with pytest.raises(env.s3.exceptions.ClientError):
        env.s3.upload_fileobj(io.BytesIO(b"x"), env.bucket, "k")

    def callback(_: int) -> None:
        raise UserError(f"{in_callback[0]} {OWN_SECRET}")

    with pytest.raises(UserError):
        env.s3.upload_fileobj(io.BytesIO(b"x"), env.bucket, "k", Callback=callback)
    env.raising = f"{in_handler[0]} {OWN_SECRET} {OWN_TOKEN}"
    with pytest.raises(UserError):
        env.s3.list_buckets()

    names = [s.name for s in env.recorder.spans]
    assert names.count("S3.upload_fileobj") == 2 and names.count("S3.PutObject attempt") == 2
    assert "S3.ListBuckets" in names
    transfer = [s for s in env.recorder.spans if s.name == "S3.upload_fileobj"]
    assert all(any(e.name == "exception" for e in s.events) for s in transfer)
    recorded = env.recorded()
    for text, secret, key_id in (in_retried_error, in_final_error, in_callback, in_handler):
        assert leaks(recorded, secret, key_id) == [], text
    for own in (OWN_KEY, OWN_SECRET, OWN_TOKEN):
        assert own not in recorded
