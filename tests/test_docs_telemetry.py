"""The docs cannot drift: span names, attributes and events are checked against the code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

import evobs

from .conftest import SpanRecorder

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _documented_names() -> set[str]:
    """Every backticked dotted name in the span docs (telemetry, services, messaging)."""
    text = ""
    for name in ("telemetry.md", "services.md", "messaging.md"):
        path = DOCS / name
        if path.exists():
            text += path.read_text()
    return set(re.findall(r"`([a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)+)`", text))


def _table_attributes(path: Path) -> set[str]:
    """Attribute names in the first column of the markdown tables of one page."""
    names = set()
    for line in path.read_text().splitlines():
        match = re.match(r"\|\s*`([a-z_][a-z0-9_.]*)`\s*\|", line)
        if match and "." in match.group(1):
            names.add(match.group(1))
    return names


def test_every_emitted_attribute_and_event_is_documented(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    moto_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Success, error and retried calls: each attribute key and event name is in the docs."""
    import botocore.retries.standard as standard

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0)
    s3 = session.client("s3", endpoint_url=moto_url)
    s3.create_bucket(Bucket="docs-bucket")
    s3.put_object(Bucket="docs-bucket", Key="k", Body=b"x")
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="docs-bucket", Key="missing")
    # A retried call: the first attempt to a closed port, then botocore gives up.
    closed = session.client(
        "dynamodb",
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=1),
    )
    with pytest.raises(Exception, match="Could not connect"):
        closed.list_tables()

    documented = _documented_names()
    emitted: set[str] = set()
    for span in recorder.spans:
        emitted.update((span.attributes or {}).keys())
        for event in span.events:
            if "." in event.name:
                emitted.add(event.name)
            emitted.update(k for k in (event.attributes or {}) if not k.startswith("exception."))
    assert recorder.named("DynamoDB.ListTables attempt"), "expected attempt spans"
    missing = sorted(emitted - documented)
    assert not missing, f"emitted but not documented in docs/: {missing}"


def test_every_documented_core_attribute_exists_in_the_code() -> None:
    """Each attribute in docs/telemetry.md's tables is written somewhere in evobs/."""
    source = "".join(p.read_text() for p in (ROOT / "evobs").rglob("*.py"))
    documented = _table_attributes(DOCS / "telemetry.md")
    assert "aws.sdk.attempts" in documented
    stale = sorted(name for name in documented if f'"{name}"' not in source)
    assert not stale, f"documented but never emitted: {stale}"


def test_readme_example_prints_the_span(moto_url: str, tmp_path: Path) -> None:
    """The README's one-liner example runs as written and prints the call's span."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "README has no python example"
    example = tmp_path / "example.py"
    example.write_text(blocks[0])
    env = dict(os.environ, AWS_ENDPOINT_URL=moto_url)
    done = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert '"name": "SQS.ListQueues"' in done.stdout
    assert '"rpc.system": "aws-api"' in done.stdout
