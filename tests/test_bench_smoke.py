"""Smoke test of ``make bench``: very short runs of both modes yield valid rows.

The benchmarks themselves (tests/benchmarks) are not part of the test run and
nothing here looks at timings or counts' sizes: only that the harness measures,
proves emission and renders its report.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.instructions import (
    Cold,
    Counter,
    Key,
    Pair,
    Row,
    cold_lines,
    module_roots,
    spec_for,
    targets_lines,
)

ROOT = Path(__file__).resolve().parents[1]


def _bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_quick_bench_produces_a_valid_row(tmp_path: Path) -> None:
    """``--quick`` on the canned workload with all three signals gives a row that
    proves spans, metric observations and log events, and renders the table."""
    raw = tmp_path / "raw.json"
    out = tmp_path / "performance.md"
    proc = _bench(
        "--quick",
        "--only",
        "cpu",
        "--workloads",
        "canned",
        "--variants",
        "baseline,evobs-all",
        "--processors",
        "simple",
        "--no-soak",
        "--no-extras",
        "--output",
        str(out),
        "--json",
        str(raw),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {
        (r["key"]["variant"], r["key"]["processor"]): r
        for r in json.loads(raw.read_text())["cpu"]["rows"]
    }
    row = rows[("evobs-all", "simple")]
    assert row["problems"] == [], row["problems"]
    (result,) = row["results"]
    assert result["spans_per_call"] == 1.0
    assert result["metric_calls_per_call"] == 1.0
    assert result["logs_proof_per_call"] >= 1.0
    assert result["order_ok"] is True
    assert result["cpu_us"] > 0 and result["peak_rss_mb"] > 0
    assert rows[("baseline", None)]["problems"] == []
    text = out.read_text()
    assert "| evobs traces+metrics+logs | simple |" in text
    assert "### canned (CPU time)" in text and "Machine:" in text
    assert "## Instructions" not in text


@pytest.mark.skipif(
    shutil.which("valgrind") is None, reason="valgrind is not installed: no instruction counter"
)
@pytest.mark.timeout(1200)  # five processes under callgrind: minutes on a busy 2-core machine
def test_quick_instruction_mode_counts_per_call_and_cold_start(tmp_path: Path) -> None:
    """``--only instructions --quick`` under callgrind: every variant gives an (N1, N2)
    pair with positive instructions per call and proves what it emitted; the cold
    start counts a whole process and lists its modules; the report has the
    instruction targets and no CPU section."""
    raw = tmp_path / "raw.json"
    out = tmp_path / "performance.md"
    proc = _bench(
        "--quick",
        "--only",
        "instructions",
        "--counter",
        "callgrind",
        "--workloads",
        "canned",
        "--variants",
        "baseline,evobs-all",
        "--cold-setups",
        "evobs-traces",
        "--output",
        str(out),
        "--json",
        str(raw),
        timeout=1100,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(raw.read_text())["instructions"]
    rows = {r["key"]["variant"]: r for r in data["per_call"]}
    assert set(rows) == {"baseline", "evobs-all"}
    for row in rows.values():
        assert row["problems"] == [], row["problems"]
        (pair,) = row["pairs"]
        assert pair["calls"][0] < pair["calls"][1]
        assert pair["instructions"][0] < pair["instructions"][1]
        assert row["per_call"] > 0
    emitted = rows["evobs-all"]["pairs"][0]["emitted"]
    assert emitted["spans_per_call"] == 1.0
    assert emitted["metric_calls_per_call"] == 1.0
    assert emitted["logs_proof_per_call"] >= 1.0
    assert emitted["span_path"]["via_start_span"] + emitted["span_path"]["direct"] == 3
    (cold,) = data["cold"]
    assert cold["variant"] == "evobs-traces" and cold["problems"] == []
    assert cold["instructions"][0] > 0
    assert {"boto3", "evobs", "opentelemetry.sdk.trace"} <= set(cold["modules"])
    text = out.read_text()
    assert "### Targets (instructions)" in text and "### canned (instructions)" in text
    assert "| evobs traces+metrics+logs | " in text
    assert "### Cold start (instructions)" in text and "| evobs traces only | " in text
    assert "## CPU time" not in text


def test_module_roots_names_the_outermost_new_package() -> None:
    """A module list diff is reported as its outermost new packages with how many
    modules each brings: a new submodule of a loaded package is its own root."""
    loaded = frozenset({"http", "http.client", "json"})
    now = {
        "http",
        "http.client",
        "http.server",
        "json",
        "prometheus_client",
        "prometheus_client.core",
        "prometheus_client.metrics",
        "wsgiref",
    }
    assert module_roots(now, loaded) == [
        ("prometheus_client", 3),
        ("http.server", 1),
        ("wsgiref", 1),
    ]


def test_counters_read_their_totals(tmp_path: Path) -> None:
    """The instruction total is read from perf's CSV output and from callgrind's
    profile summary, and a file without one is an error, not a zero."""
    perf = tmp_path / "perf.out"
    perf.write_text("# started on ...\n\n1234567,,instructions:u,1000,100.00,,\n")
    assert Counter("perf", "").read(perf) == 1234567
    grind = tmp_path / "callgrind.out"
    grind.write_text("version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 987654\n")
    assert Counter("callgrind", "").read(grind) == 987654
    grind.write_text("version: 1\n")
    with pytest.raises(ValueError):
        Counter("callgrind", "").read(grind)


def test_each_repeat_runs_at_its_own_memory_layout() -> None:
    """The k-th repeat of a row is a child told layout k, which before any import of
    its variant holds k x 997 small objects of every size class (so every later
    address moves); layout 0 allocates nothing."""
    assert spec_for(Key("canned", "evobs-all"), 30, 30, 2)["layout"] == 2
    assert spec_for(Key("canned", "evobs-all"), 30, 30)["layout"] == 0
    probe = (
        "import sys; from tests.benchmarks import child; "
        "child._shift_layout(int(sys.argv[1])); pad = child._PADDING; "
        "print(len(pad), len({sys.getsizeof(b) // 16 for b in pad}), "
        "'opentelemetry' in sys.modules)"
    )
    for layout, expected in ((0, "0 0 False"), (2, "1994 32 False")):
        out = subprocess.run(
            [sys.executable, "-c", probe, str(layout)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        assert " ".join(out) == expected


def _rows(workload: str, **per_call: float) -> dict[Key, Row]:
    rows = {}
    for variant, value in per_call.items():
        key = Key(workload, variant.replace("_", "-"))
        rows[key] = Row(key, [Pair(value, (30, 330), (0, 0), {})])
    return rows


def test_a_target_below_the_floor_says_so() -> None:
    """A missed target is reported as below the floor only when the bare SDK spans of
    the same contract already cost more than its ceiling (DESIGN 7); the floor's
    overhead and ratio stand beside every target, and a target met stays plain yes."""

    def line(floor: float, evobs: float) -> str:
        rows = _rows("retry", baseline=1e6, peer=1.5e6, floor=floor, evobs_all=evobs)
        return targets_lines(rows)[2]

    below = line(floor=1.4e6, evobs=1.425e6)
    assert "| 425.0 k | 500.0 k | 0.850 | **no**: below the floor | 400.0 k | 0.80 |" in below
    assert "| **no** |" in line(floor=1.3e6, evobs=1.425e6)
    assert "| 0.600 | yes | 400.0 k | 0.80 |" in line(floor=1.4e6, evobs=1.3e6)


def test_a_cold_goal_below_the_sdk_floor_says_so() -> None:
    """A cold-start goal missed where boto3 plus the SDK's TracerProvider alone is over
    it is reported as below the floor; one missed above the floor is a plain no."""

    def cold(sdk: int) -> list[str]:
        setups = {"baseline": 100, "sdk": sdk, "evobs-traces": 110}
        return cold_lines({v: Cold(v, [n]) for v, n in setups.items()})

    assert "| **no**: below the floor |" in cold(107)[-1]
    assert "| **no** |" in cold(103)[-1]
