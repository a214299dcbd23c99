"""The code blocks of README.md and docs/quickstart.md, run as written so they cannot drift.

Every Python block runs unchanged, each in a fresh interpreter (this environment's
python, in a subprocess), with what a user would have set in their shell:

- ``AWS_ENDPOINT_URL`` at moto's server (the ``moto_url`` fixture): botocore honours it
  for every client, so a block needs no ``endpoint_url``; fake credentials and region;
- ``OTEL_EXPORTER_OTLP_ENDPOINT`` at a local OTLP receiver (tests/otlp_receiver.py),
  standing in for a Collector.

After the block, the runner reads prometheus_client's global ``REGISTRY`` in the same
process. Each ``Service.Operation`` a block names in its comments must have been
recorded as a call (a block that instruments one session and calls through another
fails here), a block that names none must record some call, and evobs must have counted
no handler error. A block that calls ``evobs.configure()`` must also have delivered
those calls' spans to the receiver; one that says it ``prints`` a span must print it.

Blocks are chosen by their language tag: ``python`` runs; ``sh``, ``text``, ``yaml`` and
the other tags in ``NOT_RUN`` are shown, not run. Every block needs a tag, so a Python
block cannot slip through untagged. A Python block that cannot run here carries a mark
on the line before its fence, an HTML comment (not shown when the page is rendered)
that gives the reason::

    <!-- docs-test: skip (needs a real Collector at collector.internal:4318) -->

A mark without a reason fails. A block that binds a fixed port (``configure()``'s
default ``/metrics`` port, 9464) is skipped, with the port in the reason, only when the
run fails because another process on this machine holds that port.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import evobs
from tests.otlp_receiver import otlp_receiver

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("README.md", "docs/quickstart.md")
#: Pages whose "N commands" headings are checked against the block under them.
COMMAND_PAGES = ("README.md", "docs/quickstart.md", "docs/operations.md", "exporters/README.md")
PYTHON = frozenset({"python", "py", "python3"})
NOT_RUN = frozenset({"sh", "bash", "shell", "console", "text", "yaml", "json", "toml", "promql"})

_FENCE = re.compile(r"^```(?P<lang>[^\s`]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
_MARK = re.compile(r"^<!--\s*docs-test:\s*(?P<verb>[\w-]+)\s*(?:\((?P<reason>[^)]*)\))?\s*-->$")
_CALL = re.compile(r"\b([A-Z][A-Za-z0-9]*\.[A-Z][A-Za-z0-9]+)\b")
_PORT_TAKEN = re.compile(r"port (\d+) is already in use")
_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}

#: Runs the block as ``python block.py`` would (``__main__``), then reports what the
#: global registry recorded: calls per Service.Operation and evobs's handler errors.
_WRAPPER = """
import json, runpy, sys
block, report = sys.argv[1], sys.argv[2]
sys.argv = [block]
try:
    runpy.run_path(block, run_name="__main__")
finally:
    from prometheus_client import REGISTRY
    calls, errors = {}, 0.0
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == "aws_sdk_call_duration_seconds_count":
                key = sample.labels["service"] + "." + sample.labels["operation"]
                calls[key] = calls.get(key, 0.0) + sample.value
            elif sample.name == "evobs_handler_errors_total":
                errors += sample.value
    with open(report, "w") as out:
        json.dump({"calls": calls, "handler_errors": errors}, out)
"""


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language tag, its code, its mark if any."""

    page: str
    line: int
    lang: str
    code: str
    mark: str | None
    reason: str | None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    def comments(self) -> str:
        return "\n".join(line.partition("#")[2] for line in self.code.splitlines())

    def named_calls(self) -> set[str]:
        return set(_CALL.findall(self.comments()))

    def printed_calls(self) -> set[str]:
        return {
            name
            for line in self.code.splitlines()
            if re.search(r"\bprints\b", line.partition("#")[2])
            for name in _CALL.findall(line.partition("#")[2])
        }


def blocks(page: str) -> list[Block]:
    """Every fenced block of ``page`` (relative to the repository)."""
    return parse(page, (ROOT / page).read_text())


def parse(page: str, text: str) -> list[Block]:
    """Every fenced block of ``text``, with the docs-test mark on the line before it."""
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rpartition("\n")[2].strip()
        mark = _MARK.match(before)
        found.append(
            Block(
                page=page,
                line=text.count("\n", 0, match.start()) + 1,
                lang=match["lang"].lower(),
                code=match["body"],
                mark=mark["verb"] if mark else None,
                reason=(mark["reason"] or "").strip() or None if mark else None,
            )
        )
    return found


PYTHON_BLOCKS = [b for page in PAGES for b in blocks(page) if b.lang in PYTHON]


@pytest.mark.parametrize("page", PAGES)
def test_every_block_is_tagged_and_marks_are_explained(page: str) -> None:
    """Each block has a known language tag (untagged or unknown ones would be silently
    skipped); a mark is only ``skip`` on a Python block, and always gives its reason."""
    found = blocks(page)
    assert found, f"{page} has no code block: the parser is broken"
    for block in found:
        assert block.lang in PYTHON | NOT_RUN, f"{block.id}: tag {block.lang!r} unknown"
        if block.mark is not None:
            assert block.mark == "skip", f"{block.id}: unknown mark {block.mark!r}"
            assert block.lang in PYTHON, f"{block.id}: only Python blocks are run or skipped"
            assert block.reason, f"{block.id}: a skip mark must say why, in parentheses"


def test_marks_and_tags_are_parsed() -> None:
    """The parser finds tags, untagged blocks, a skip mark with its reason, and a mark
    without one (which the check above rejects)."""
    page = (
        "Text.\n\n<!-- docs-test: skip (needs a real Collector) -->\n```python\nimport x\n```\n"
        "\n```\nplain\n```\n\n<!-- docs-test: skip -->\n```py\ny = 1  # S3.ListBuckets\n```\n"
        "\n```sh\nmake demo\n```\n"
    )
    found = parse("page.md", page)
    assert [(b.lang, b.mark, b.reason, b.line) for b in found] == [
        ("python", "skip", "needs a real Collector", 4),
        ("", None, None, 8),
        ("py", "skip", None, 13),
        ("sh", None, None, 17),
    ]
    assert found[2].named_calls() == {"S3.ListBuckets"}
    assert found[0].code == "import x\n"


def test_the_pages_have_python_blocks_to_run() -> None:
    """The examples this file guards exist: the README's and the quickstart's."""
    assert {b.page for b in PYTHON_BLOCKS} == set(PAGES)
    assert len(PYTHON_BLOCKS) >= 3


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.id)
def test_python_block_runs_as_written(block: Block, moto_url: str, tmp_path: Path) -> None:
    """The block runs unchanged in a fresh interpreter against moto, records every call it
    names (and, through configure(), exports their spans), with no evobs handler error."""
    if block.mark == "skip":
        pytest.skip(f"{block.id} is marked not to run here: {block.reason}")
    script = tmp_path / "block.py"
    script.write_text(block.code)
    wrapper = tmp_path / "run_block.py"
    wrapper.write_text(_WRAPPER)
    report = tmp_path / "report.json"
    with otlp_receiver() as collector:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "OTEL_", "EVOBS_", "PROMETHEUS_"))
        }
        env.update(
            AWS_ENDPOINT_URL=moto_url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            AWS_EC2_METADATA_DISABLED="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.base_url,
        )
        done = subprocess.run(
            [sys.executable, str(wrapper), str(script), str(report)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        taken = _PORT_TAKEN.search(done.stderr)
        if done.returncode != 0 and taken:
            pytest.skip(f"{block.id} binds port {taken[1]} as documented, and it is taken here")
        assert done.returncode == 0, f"{block.id}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        recorded = json.loads(report.read_text())
        named = block.named_calls()
        assert named <= set(recorded["calls"]), (block.id, named, recorded)
        assert recorded["calls"], f"{block.id} made no call that evobs recorded"
        assert recorded["handler_errors"] == 0, recorded
        for name in block.printed_calls():
            assert f'"name": "{name}"' in done.stdout, (block.id, name, done.stdout[-3000:])
        if "evobs.configure(" in block.code:
            exported = {s.name for s in collector.wait_for(len(named))}
            assert named <= exported, (block.id, named, exported)


def test_wheel_names_in_the_docs_carry_the_current_version() -> None:
    """Install commands name the wheel `make dist` builds for this version."""
    for page in (*PAGES, "docs/operations.md"):
        for version in re.findall(r"evobs-(\d[^-\s]*)-py3", (ROOT / page).read_text()):
            assert version == evobs.__version__, (page, version)


@pytest.mark.parametrize("page", COMMAND_PAGES)
def test_announced_commands_are_shown(page: str) -> None:
    """A heading "N commands" is followed by a block of exactly N commands."""
    text = (ROOT / page).read_text()
    for match in re.finditer(r"^#+ (\w+) commands?\s*$", text, re.M | re.I):
        count = _NUMBERS.get(match[1].lower())
        if count is None:
            continue
        fence = _FENCE.search(text, match.end())
        assert fence is not None, (page, match[0])
        commands = [
            line
            for line in fence["body"].splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        assert len(commands) == count, (page, match[0], commands)


def test_operations_and_the_exporters_readme_agree_on_the_command_count() -> None:
    """docs/operations.md says how many commands exporters/README.md starts the stack in."""
    heading = re.search(r"^## (\w+) commands$", (ROOT / "exporters/README.md").read_text(), re.M)
    sentence = re.search(r"starts it in (\w+) commands", (ROOT / "docs/operations.md").read_text())
    assert heading and sentence
    assert heading[1].lower() == sentence[1].lower()
