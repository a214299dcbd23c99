"""Helpers for the GenAI tests: a client of the local Bedrock endpoint, and a probe that
drives :mod:`evobs.genai` from botocore's own events, as a signal will.

The probe reads the request at ``provide-client-params`` and, at ``after-call``,
either reads the response (InvokeModel's body is replaced there, before the
application sees it) or wraps the returned stream. So every test goes through real
HTTP, botocore's real parsing, and the same hand-over points the signals use.
"""

from __future__ import annotations

import time
from typing import Any

import boto3
from botocore.config import Config

from evobs import genai
from evobs.demo.bedrock import BedrockServer
from evobs.genai.runtime import STREAM_MEMBERS

_KEY = "evobs.test.genai"

#: One model id per family, and one no family knows.
MODELS = {
    "anthropic.claude": "anthropic.claude-3-haiku-20240307-v1:0",
    "amazon.nova": "us.amazon.nova-lite-v1:0",
    "amazon.titan-text": "amazon.titan-text-express-v1",
    "meta.llama": "meta.llama3-8b-instruct-v1:0",
    "mistral": "mistral.mistral-7b-instruct-v0:2",
    "cohere.command-r": "cohere.command-r-v1:0",
    "cohere.command": "cohere.command-text-v14",
    None: "ai21.jamba-1-5-mini-v1:0",
}


_SESSION: list[boto3.Session] = []


def client_for(server: BedrockServer, attempts: int = 1) -> Any:
    """A bedrock-runtime client of the local endpoint (``attempts`` in total)."""
    return client_at(server.url, attempts)


def client_at(url: str, attempts: int = 1) -> Any:
    """A bedrock-runtime client of ``url`` (the local endpoint, or a fault proxy in front
    of it), ``attempts`` in total.

    Clients share one session (its loaded service model): creating one costs ~10 ms
    instead of ~300 ms. Each client has its own event handlers.
    """
    if not _SESSION:
        _SESSION.append(
            boto3.Session(
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                region_name="us-east-1",
            )
        )
    return _SESSION[0].client(
        "bedrock-runtime",
        endpoint_url=url,
        config=Config(
            retries={"mode": "standard", "total_max_attempts": attempts},
            connect_timeout=2,
            read_timeout=5,
        ),
    )


class Probe:
    """Drives evobs.genai from one client's events; records what it produced."""

    def __init__(self, client: Any, settings: genai.Settings | None = None) -> None:
        self.settings = settings or genai.Settings()
        self.requests: list[genai.Request] = []
        self.responses: list[genai.Response] = []
        self.summaries: list[genai.StreamSummary] = []
        self.errors: list[BaseException] = []
        events = client.meta.events
        events.register_first("provide-client-params.bedrock-runtime.*", self._params)
        events.register_first("after-call.bedrock-runtime.*", self._after)

    def _params(self, params: Any, model: Any, context: Any, **kwargs: Any) -> None:
        request = genai.read_request(model.name, params, self.settings)
        if request is not None:
            self.requests.append(request)
            context[_KEY] = (request, time.perf_counter_ns())

    def _after(
        self, http_response: Any, parsed: Any, model: Any, context: Any, **kwargs: Any
    ) -> None:
        found = context.get(_KEY)
        if found is None or http_response.status_code >= 300:
            return
        request, start_ns = found
        if model.name in STREAM_MEMBERS:
            genai.wrap_stream(
                request,
                parsed,
                self.settings,
                self.summaries.append,
                start_ns=start_ns,
                model=model,
                on_error=self.errors.append,
            )
        else:
            self.responses.append(genai.read_response(request, parsed, self.settings))

    @property
    def request(self) -> genai.Request:
        assert len(self.requests) == 1, self.requests
        return self.requests[0]

    @property
    def response(self) -> genai.Response:
        assert len(self.responses) == 1, self.responses
        return self.responses[0]

    @property
    def summary(self) -> genai.StreamSummary:
        assert len(self.summaries) == 1, self.summaries
        return self.summaries[0]


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it is true or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True
