"""The dependency matrix (tests/matrix.py) agrees with pyproject.toml and its documentation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="the matrix driver reads pyproject.toml with tomllib"
)

ROOT = Path(__file__).resolve().parent.parent


def test_lowest_cell_pins_every_runtime_dependency_at_its_lower_bound(tmp_path: Path) -> None:
    """Each runtime dependency's ``>=`` bound is the lowest cell's pin, and what moves with
    a dependency (boto3, the OTLP exporter) is pinned at its own declared bound."""
    from tests.matrix import lowest_pins

    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        "[project]\n"
        'dependencies = ["botocore>=1.35", "opentelemetry-sdk >= 1.25", "structlog>=24.1,<30"]\n'
        "[project.optional-dependencies]\n"
        'demo = ["boto3>=1.35", "moto[server]>=5.0"]\n'
        'otlp = ["opentelemetry-exporter-otlp-proto-http>=1.25"]\n'
    )
    assert lowest_pins(pyproject) == {
        "botocore": "1.35",
        "opentelemetry-sdk": "1.25",
        "structlog": "24.1",
        "boto3": "1.35",
        "opentelemetry-exporter-otlp-proto-http": "1.25",
    }


def test_a_runtime_dependency_without_lower_bound_is_refused(tmp_path: Path) -> None:
    """The lowest cell cannot be built from an unbounded dependency: say so, loudly."""
    from tests.matrix import lowest_pins

    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["structlog"]\n')
    with pytest.raises(SystemExit, match="structlog"):
        lowest_pins(pyproject)


def test_compatibility_doc_lists_every_cell_as_the_driver_runs_it() -> None:
    """docs/compatibility.md's table is the driver's cells, row for row, and its table
    of lowest supported versions is pyproject.toml's lower bounds."""
    from tests.matrix import cells, lowest_pins, table

    doc = (ROOT / "docs" / "compatibility.md").read_text()
    rows = [line for line in doc.splitlines() if line.startswith("| `")]
    assert rows == table(cells())
    pins = lowest_pins()
    supported = {
        "opentelemetry-api, opentelemetry-sdk": pins["opentelemetry-sdk"],
        "prometheus-client": pins["prometheus-client"],
        "structlog": pins["structlog"],
        "botocore (boto3 for the `demo` extra)": pins["botocore"],
    }
    assert pins["opentelemetry-api"] == pins["opentelemetry-sdk"]
    assert pins["boto3"] == pins["botocore"]
    for name, version in supported.items():
        assert f"| {name} | {version} |" in doc
