"""Smoke test of ``make bench``: one very short variant runs and yields a valid row.

The benchmarks themselves (tests/benchmarks) are not part of the test run and
nothing here looks at timings: only that the harness measures and proves emission.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_bench_produces_a_valid_row(tmp_path: Path) -> None:
    """``--quick`` on the canned workload with all three signals gives a row that
    proves spans, metric observations and log events, and renders the table."""
    raw = tmp_path / "raw.json"
    out = tmp_path / "performance.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.benchmarks",
            "--quick",
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
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {
        (r["key"]["variant"], r["key"]["processor"]): r for r in json.loads(raw.read_text())["rows"]
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
    assert "## canned" in text and "Machine:" in text
