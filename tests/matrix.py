"""The dependency matrix: the test suite in fresh environments, one per cell.

Each cell is a Python version and a set of pins for evobs's runtime dependencies; the
lowest cell's pins are read from pyproject.toml's lower bounds, so the two cannot drift.
Environments are cached in ``.venv-matrix/<cell>`` and rebuilt when the cell's spec
changes (the interpreter, the pins, or pyproject.toml's dependencies); cells that float
to the newest releases are re-resolved once they are a week old, or with ``--rebuild``.

Run with ``make test-matrix`` (``CELLS=lowest`` picks cells, ``PYTEST_ARGS=...`` passes
arguments to pytest). Standard library only: it runs before any environment exists.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the driver runs on the project's 3.11 venv
    tomllib = None

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".venv-matrix"
FLOATING_MAX_AGE_S = 7 * 24 * 3600

# The suite's test files that run in every cell whatever the budget: the span path is
# where the SDK's private shapes matter, core/secrets/redaction are the contract, and
# fork depends on the SDK's resource handling.
ALWAYS = (
    "tests/test_span_path.py",
    "tests/test_core.py",
    "tests/test_secrets.py",
    "tests/test_redact_properties.py",
    "tests/test_fork.py",
)

# Packages that move together with a runtime dependency and are pinned with it:
# boto3 with botocore, the OTLP exporter and protobuf bindings with the SDK.
OTEL_FAMILY = (
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-proto",
)
SHOWN = (
    "opentelemetry-sdk",
    "prometheus-client",
    "structlog",
    "botocore",
    "boto3",
    "moto",
    "pytest",
)
PYTEST_SUMMARY = re.compile(
    r"\b\d+ (passed|failed|errors?|skipped|deselected|xfailed|xpassed|warnings?)\b.* in [0-9.]+s"
)
SHORT = {"opentelemetry-sdk": "otel-sdk", "prometheus-client": "prometheus-client"}


@dataclass
class Cell:
    """One environment of the matrix: an interpreter, pins, and the tests it runs."""

    name: str
    python: str
    pins: dict[str, str]
    why: str
    tests: tuple[str, ...] = ()  # empty: the whole suite
    floating: bool = field(default=False)


def _requirement(spec: str) -> tuple[str, str | None]:
    """(normalised name, lower bound) of a requirement such as ``botocore>=1.35``."""
    match = re.match(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(.*)$", spec)
    if not match:
        raise ValueError(f"cannot read requirement {spec!r}")
    name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
    bound = re.search(r">=\s*([0-9][0-9A-Za-z.]*)", match.group(3))
    return name, bound.group(1) if bound else None


def lowest_pins(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """Every runtime dependency at its declared lower bound, with what moves with it."""
    if tomllib is None:
        raise SystemExit("tests/matrix.py needs Python 3.11+ (tomllib) to read pyproject.toml")
    project = tomllib.loads(pyproject.read_text())["project"]
    pins: dict[str, str] = {}
    for spec in project["dependencies"]:
        name, bound = _requirement(spec)
        if bound is None:
            raise SystemExit(f"pyproject.toml: runtime dependency {spec!r} has no lower bound")
        pins[name] = bound
    companions = {"boto3", *OTEL_FAMILY}
    for specs in project.get("optional-dependencies", {}).values():
        for spec in specs:
            name, bound = _requirement(spec)
            if name in companions and bound is not None:
                pins.setdefault(name, bound)
    return pins


def otel_pins(version: str) -> dict[str, str]:
    """The OpenTelemetry packages evobs and its tests use, all at one release."""
    return dict.fromkeys(OTEL_FAMILY, version)


def cells() -> list[Cell]:
    return [
        Cell(
            "lowest",
            "3.10",
            lowest_pins(),
            "every runtime dependency at its lower bound in pyproject.toml, oldest Python",
        ),
        Cell(
            "otel-1.40",
            "3.12",
            otel_pins("1.40.0"),
            "the lowest SDK evobs's fast span path applies on (its OnEnding hook, tracer "
            "configurator): the lower end of FAST_SPANS_PROVEN",
            tests=ALWAYS,
        ),
        Cell(
            "newest",
            "3.13",
            {},
            "every dependency at its newest release, newest Python",
            floating=True,
        ),
    ]


def _variant(cell: Cell, otel: str | None, pins: list[str], python: str | None) -> Cell:
    """A one-off cell from ``cell`` with other pins or Python (its own cached environment)."""
    changed = dict(cell.pins)
    if otel:
        changed.update(otel_pins(otel))
    for pin in pins:
        name, sep, version = pin.partition("==")
        if not sep or not version:
            raise SystemExit(f"--pin {pin!r}: expected NAME==VERSION")
        changed[_requirement(name)[0]] = version
    python = python or cell.python
    tag = hashlib.sha256(json.dumps([python, sorted(changed.items())]).encode()).hexdigest()[:8]
    why = f"{cell.name} with Python {python}, " + " ".join(f"{n}=={v}" for n, v in changed.items())
    return Cell(f"{cell.name}+{tag}", python, changed, why, cell.tests, floating=cell.floating)


def find_python(version: str) -> str | None:
    """An interpreter for ``version`` (``3.10``): on PATH, else a pyenv installation."""
    candidates = []
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(on_path)
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = glob.glob(
        os.path.join(pyenv_root, "versions", f"{version}.*", "bin", f"python{version}")
    )
    candidates += sorted(found, key=lambda p: [int(x) for x in re.findall(r"\d+", p)], reverse=True)
    candidates += [f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for candidate in candidates:
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == version:
            return candidate
    return None


def _full_version(python: str) -> str:
    return subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _spec_digest(cell: Cell, python: str) -> str:
    """What the environment was built from: rebuilt when any of it changes."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    spec = {
        "python": [python, _full_version(python)],
        "pins": sorted(cell.pins.items()),
        "dependencies": project["dependencies"],
        "optional": project.get("optional-dependencies", {}),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _log(message: str) -> None:
    print(message, flush=True)


class CellError(Exception):
    """A cell that cannot run: no interpreter, or an environment that did not build."""


def _quiet(command: list[str], cwd: Path | None = None) -> None:
    """Runs a build step with its output kept (it would interleave with another cell's
    tests), shown only if the step fails."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise CellError(f"`{' '.join(command[-4:])}` failed:\n  " + "\n  ".join(tail))


def build(cell: Cell, python: str, rebuild: bool) -> tuple[Path, float, bool]:
    """The cell's environment, built unless the cached one matches: (path, seconds, built)."""
    venv = CACHE / cell.name
    stamp = venv / ".cell.json"
    digest = _spec_digest(cell, python)
    if stamp.exists() and not rebuild:
        recorded = json.loads(stamp.read_text())
        fresh = not cell.floating or time.time() - recorded["built_at"] < FLOATING_MAX_AGE_S
        if recorded.get("digest") == digest and fresh:
            return venv, 0.0, False
    started = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(exist_ok=True)
    _quiet([python, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    _quiet([*pip, "install", "--quiet", "--upgrade", "pip"])
    constraints = venv / "constraints.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in cell.pins.items()))
    _quiet([*pip, "install", "--quiet", "-c", str(constraints), "-e", f"{ROOT}[dev]"], cwd=ROOT)
    stamp.write_text(json.dumps({"digest": digest, "built_at": time.time()}))
    return venv, time.monotonic() - started, True


def prepare(cell: Cell, rebuild: bool) -> tuple[str, Path, float, bool]:
    """(interpreter, environment, build seconds, built) for a cell, or CellError."""
    python = find_python(cell.python)
    if python is None:
        raise CellError(f"no Python {cell.python} interpreter found (PATH, pyenv)")
    return (python, *build(cell, python, rebuild))


def installed(venv: Path) -> dict[str, str]:
    """Versions of the packages that define the cell, as installed."""
    script = (
        "import json, sys\n"
        "from importlib.metadata import version, PackageNotFoundError\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: out[name] = version(name)\n"
        "    except PackageNotFoundError: out[name] = '-'\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script, *SHOWN],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def run_tests(venv: Path, tests: tuple[str, ...], pytest_args: list[str]) -> tuple[int, str]:
    """pytest in the cell's environment, streamed; (exit code, pytest's closing line)."""
    command = [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += [*pytest_args, *tests]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    closing = ""
    for line in process.stdout:
        print(line, end="", flush=True)
        if PYTEST_SUMMARY.search(line):
            closing = line.strip().strip("=").strip()
    code = process.wait()
    return code, closing or f"pytest exited with code {code}"


def table(matrix: list[Cell]) -> list[str]:
    """The cells as the rows of docs/compatibility.md's table (a test keeps them equal)."""
    columns = (
        ("opentelemetry-sdk",),
        ("prometheus-client",),
        ("structlog",),
        ("botocore", "boto3"),
    )
    rows = []
    for cell in matrix:
        pinned = [" / ".join(cell.pins.get(n, "newest") for n in names) for names in columns]
        pinned = [p if p != "newest / newest" else "newest" for p in pinned]
        tests = ", ".join(f"`{Path(t).stem}`" for t in cell.tests) or "whole suite"
        rows.append(f"| `{cell.name}` | {cell.python} | {' | '.join(pinned)} | {tests} |")
    return rows


def describe(versions: dict[str, str]) -> str:
    return ", ".join(f"{SHORT.get(name, name)} {versions[name]}" for name in SHOWN)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", action="append", help="run only this cell (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the cells and exit")
    parser.add_argument(
        "--table", action="store_true", help="print the cells as docs/compatibility.md's rows"
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild the environments")
    parser.add_argument(
        "--otel", metavar="VERSION", help="try the chosen cells with this OpenTelemetry release"
    )
    parser.add_argument(
        "--pin", action="append", default=[], metavar="NAME==VERSION", help="extra pin (repeatable)"
    )
    parser.add_argument("--python", metavar="X.Y", help="try the chosen cells on this Python")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args(argv)

    matrix = cells()
    if args.table:
        _log("\n".join(table(matrix)))
        return 0
    if args.list:
        for cell in matrix:
            pins = " ".join(f"{n}=={v}" for n, v in cell.pins.items()) or "(newest of each)"
            scope = " ".join(cell.tests) or "whole suite"
            _log(f"{cell.name}: Python {cell.python}; {pins}; runs {scope}\n    {cell.why}")
        return 0
    if args.cell:
        unknown = set(args.cell) - {cell.name for cell in matrix}
        if unknown:
            parser.error(f"unknown cell(s) {sorted(unknown)}; see --list")
        matrix = [cell for cell in matrix if cell.name in args.cell]
    if args.otel or args.pin or args.python:
        matrix = [_variant(cell, args.otel, args.pin, args.python) for cell in matrix]

    summaries = []
    failed = False
    # Environments are built one after the other in the background, so the next cell's
    # is ready (or nearly) when this cell's tests end.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as builder:
        ready = [builder.submit(prepare, cell, args.rebuild) for cell in matrix]
        for cell, environment in zip(matrix, ready, strict=True):
            _log(f"\n{'=' * 30} matrix cell {cell.name}: Python {cell.python} {'=' * 30}")
            _log(f"  {cell.why}")
            try:
                python, venv, build_s, built = environment.result()
            except (CellError, OSError, subprocess.SubprocessError) as error:
                _log(f"  {error}")
                summaries.append(f"{cell.name} (Python {cell.python}): FAILED: {error}")
                failed = True
                continue
            versions = installed(venv)
            env_note = f"environment built in {build_s:.0f}s" if built else "cached environment"
            _log(f"  Python {_full_version(python)}, {describe(versions)} ({env_note})")
            _log(f"  runs: {' '.join(cell.tests) or 'the whole suite'}\n")
            started = time.monotonic()
            code, closing = run_tests(venv, cell.tests, args.pytest_args)
            test_s = time.monotonic() - started
            status = "passed" if code == 0 else "FAILED"
            failed |= code != 0
            line = (
                f"{cell.name} (Python {cell.python}, {describe(versions)}): {status}: "
                f"{closing} [tests {test_s:.0f}s, env {build_s:.0f}s]"
            )
            summaries.append(line)
            _log(f"\n{'-' * 10} matrix cell {line}")

    _log(f"\n{'=' * 30} matrix summary {'=' * 30}")
    for line in summaries:
        _log(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
