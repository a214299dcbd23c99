"""The demo's GenAI workload: the order service's assistant, on Amazon Bedrock Runtime.

No account is needed: the model is the local Bedrock Runtime endpoint
(:mod:`evobs.demo.bedrock`: canned completions, real event streams, a first token after
a short wait and then one word at a time), behind the fault proxy
(:class:`~evobs.demo.faults.FaultServer`), which passes the streams through as they
arrive and throttles some calls with Bedrock's 429 ``ThrottlingException``. Each unit of
work runs under an application span, as the rest of the demo's do:

- ``answer customer question``: Converse (Anthropic Claude), now and then with a
  guardrail that intervenes;
- ``summarise order``: ConverseStream (Amazon Nova), read as it arrives; now and then
  the model's stream breaks off with a ``throttlingException`` event;
- ``describe product``: InvokeModel with an Anthropic messages body;
- ``draft product copy``: InvokeModelWithResponseStream (Meta Llama); sometimes the
  reader has enough after a few chunks and closes the stream;
- ``check review``: ApplyGuardrail on a customer review.

So a new user sees GenAI spans (named ``chat {model}``, with token usage and finish
reasons), stream spans that end when the stream does, the ``gen_ai_*`` metrics, and
throttling counted as ``throttled`` like any other AWS call.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from .bedrock import GUARDRAIL_TRIGGER

if TYPE_CHECKING:
    from .bedrock import BedrockServer
    from .faults import FaultServer

__all__ = [
    "CLAUDE",
    "LLAMA",
    "NOVA",
    "UNITS",
    "Assistant",
    "BedrockChaos",
    "bedrock_endpoint",
]

CLAUDE: Final = "anthropic.claude-3-haiku-20240307-v1:0"
NOVA: Final = "us.amazon.nova-lite-v1:0"
LLAMA: Final = "meta.llama3-8b-instruct-v1:0"
GUARDRAIL: Final = "gr-order-assistant"
#: The assistant's units of work (application spans).
UNITS: Final = (
    "answer customer question",
    "summarise order",
    "describe product",
    "draft product copy",
    "check review",
)
#: How long the local model takes to its first token, and per further token: enough for
#: a stream's time to first chunk to differ visibly from its duration.
FIRST_TOKEN_SECONDS: Final = 0.03
TOKEN_SECONDS: Final = 0.004
_COMPLETION: Final = (
    "Order 42 holds three items, was paid by card, and ships tomorrow from the Lyon warehouse."
)


@contextlib.contextmanager
def bedrock_endpoint() -> Iterator[tuple[BedrockServer, FaultServer]]:
    """The local Bedrock Runtime endpoint with a fault proxy in front of it.

    Yields ``(bedrock_server, fault_server)``; clients use ``fault_server.url``."""
    from .bedrock import BedrockServer
    from .faults import FaultServer

    server = BedrockServer(
        completion=_COMPLETION,
        first_token_seconds=FIRST_TOKEN_SECONDS,
        token_seconds=TOKEN_SECONDS,
    ).start()
    proxy = FaultServer(upstream=server.url).start()
    try:
        yield server, proxy
    finally:
        proxy.stop()
        server.stop()


def _throttle() -> Any:
    """Bedrock's throttling answer, from the fault proxy: 429 ThrottlingException."""
    from .faults import Fault

    return Fault.error(
        429, "ThrottlingException", "Too many tokens, please wait before trying again."
    ).with_style("json")


class BedrockChaos:
    """Scripts Bedrock's faults at fixed, seeded rates: a throttle (one retry), a surge
    (every attempt throttled: the call fails ``throttled``) at the fault proxy, and a
    stream that breaks off with a ``throttlingException`` event at the endpoint."""

    __slots__ = ("_lock", "_rng", "attempts", "injected", "proxy", "rates", "server")

    def __init__(
        self,
        proxy: FaultServer | None,
        server: BedrockServer | None,
        *,
        seed: int = 11,
        throttle: float = 0.08,
        surge: float = 0.015,
        stream_error: float = 0.05,
        attempts: int = 3,
    ) -> None:
        self.proxy = proxy
        self.server = server
        self.rates = (throttle, surge, stream_error)
        self.attempts = attempts
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        #: Faults scripted so far, by kind.
        self.injected: dict[str, int] = {"throttle": 0, "surge": 0, "stream_error": 0}

    def before(self, path: str, stream: str | None = None) -> None:
        """Maybe script a fault for the next request whose path matches ``path``
        (``stream``: the operation name, for a stream that may break off)."""
        throttle, surge, stream_error = self.rates
        with self._lock:
            roll = self._rng.random()
        if self.proxy is not None and roll < surge:
            kind = "surge"
            self.proxy.script([_throttle().on(path=path)] * self.attempts)
        elif self.proxy is not None and roll < surge + throttle:
            kind = "throttle"
            self.proxy.script([_throttle().on(path=path)])
        elif stream and self.server is not None and roll < surge + throttle + stream_error:
            from .bedrock import BedrockFault

            kind = "stream_error"
            self.server.script(
                [BedrockFault.stream_error("throttlingException", after=4).on(stream)]
            )
        else:
            return
        with self._lock:
            self.injected[kind] += 1


class Assistant:
    """The assistant's workload against ``endpoint_url`` (the fault proxy's)."""

    def __init__(
        self,
        session: Any,
        endpoint_url: str,
        *,
        proxy: FaultServer | None = None,
        server: BedrockServer | None = None,
        seed: int = 11,
        max_attempts: int = 3,
        think: float = 0.01,
    ) -> None:
        from botocore.config import Config

        self.chaos = BedrockChaos(proxy, server, seed=seed, attempts=max_attempts)
        self.think = think
        # Standard retry mode with few attempts: real backoff, cheap retries (as the
        # workload's own clients; that module imports this one).
        config = Config(
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=2,
            read_timeout=10,
        )
        self._client = session.client("bedrock-runtime", endpoint_url=endpoint_url, config=config)

    def loop(self, unit: Callable[..., None], done: Callable[[], bool]) -> None:
        """Run the units in turn, each through ``unit(name, body, *args)`` (the
        workload's application span and tally), until ``done()``."""
        i = 0
        while not done():
            unit("answer customer question", self._answer, i)
            if i % 2 == 0:
                unit("summarise order", self._summarise, i)
            if i % 3 == 1:
                unit("describe product", self._describe, i)
            if i % 3 == 2:
                unit("draft product copy", self._draft, i)
            if i % 5 == 4:
                unit("check review", self._check_review, i)
            i += 1
            if self.think:
                time.sleep(self.think)

    # -- the units --------------------------------------------------------------------

    def _answer(self, i: int) -> None:
        question = f"Where is my order {i}?"
        extra: dict[str, Any] = {}
        if i % 6 == 5:  # a customer asks what the guardrail blocks
            question = f"Tell me how to get a {GUARDRAIL_TRIGGER} discount on order {i}"
            extra["guardrailConfig"] = {"guardrailIdentifier": GUARDRAIL, "guardrailVersion": "1"}
        self.chaos.before(r"/converse$")
        self._client.converse(
            modelId=CLAUDE,
            system=[{"text": "You answer questions about orders, briefly."}],
            messages=[{"role": "user", "content": [{"text": question}]}],
            inferenceConfig={"maxTokens": 256, "temperature": 0.2},
            **extra,
        )

    def _summarise(self, i: int) -> None:
        self.chaos.before(r"/converse-stream$", stream="ConverseStream")
        response = self._client.converse_stream(
            modelId=NOVA,
            messages=[{"role": "user", "content": [{"text": f"Summarise order {i}"}]}],
            inferenceConfig={"maxTokens": 128},
        )
        text = []
        for event in response["stream"]:  # as a chat UI shows the answer, word by word
            delta = event.get("contentBlockDelta", {}).get("delta", {})
            text.append(delta.get("text", ""))

    def _describe(self, i: int) -> None:
        body = {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 200,
            "messages": [{"role": "user", "content": f"Describe product {i % 40}"}],
        }
        self.chaos.before(r"/invoke$")
        out = self._client.invoke_model(modelId=CLAUDE, body=json.dumps(body).encode())
        json.loads(out["body"].read())

    def _draft(self, i: int) -> None:
        body = {"prompt": f"Write a product description for item {i % 40}", "max_gen_len": 64}
        self.chaos.before(r"/invoke-with-response-stream$", stream="InvokeModelWithResponseStream")
        stream = self._client.invoke_model_with_response_stream(
            modelId=LLAMA, body=json.dumps(body).encode()
        )["body"]
        enough = 3 if i % 4 == 2 else None  # the writer stops early: the stream is closed
        for n, _chunk in enumerate(stream, 1):
            if enough is not None and n >= enough:
                break
        stream.close()

    def _check_review(self, i: int) -> None:
        review = "Great service" if i % 10 != 9 else f"This is {GUARDRAIL_TRIGGER} content"
        self.chaos.before(r"/apply$")
        self._client.apply_guardrail(
            guardrailIdentifier=GUARDRAIL,
            guardrailVersion="1",
            source="INPUT",
            content=[{"text": {"text": review}}],
        )
