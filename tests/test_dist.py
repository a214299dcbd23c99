"""The distributions `make dist` builds: what the wheel and the sdist hold, their metadata
against pyproject.toml, `twine check --strict`, a build free of setuptools warnings, and the
wheel installed as docs/quickstart.md says into a fresh virtual environment.

The source tree (git's tracked and untracked-but-not-ignored files) is copied to a
temporary directory and built there with the same command as `make dist`, so the checkout
gets no build output.
"""

from __future__ import annotations

import email.parser
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

import evobs

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: In the source tree but not in the sdist: CI's and git's own files.
NOT_IN_SDIST = (".ci/", ".gitignore")
#: What setuptools writes into an sdist besides the source.
SDIST_GENERATED = re.compile(r"^(PKG-INFO|setup\.cfg|evobs\.egg-info/.*)$")
#: Warning classes a build backend prints (SetuptoolsDeprecationWarning, BuildBackendWarning...).
WARNING_CLASS = re.compile(r"\b[A-Z]\w*Warning\b|(?i:deprecat)")


def _source_files() -> list[str]:
    """The source tree's files, relative to ROOT: git's view, else a walk without build output."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        files = [f for f in listed.split("\0") if f and (ROOT / f).is_file()]
        if files:
            return sorted(files)
    except (OSError, subprocess.CalledProcessError):
        pass
    skip = re.compile(
        r"(^|/)(\.git|\.venv[^/]*|dist|build|[^/]*\.egg-info|__pycache__|\.\w+_cache)/"
    )
    return sorted(
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*")
        if p.is_file() and not skip.search(str(p.relative_to(ROOT)) + "/")
    )


class Built:
    """The result of one build: the two files and what the build printed."""

    def __init__(self, outdir: Path, output: str, sources: list[str]) -> None:
        self.wheel = next(outdir.glob("*.whl"))
        self.sdist = next(outdir.glob("*.tar.gz"))
        self.output = output
        self.sources = sources

    def wheel_names(self) -> list[str]:
        with zipfile.ZipFile(self.wheel) as wheel:
            return wheel.namelist()

    def wheel_metadata(self) -> Any:
        name = f"evobs-{evobs.__version__}.dist-info/METADATA"
        with zipfile.ZipFile(self.wheel) as wheel:
            return email.parser.Parser().parsestr(wheel.read(name).decode())

    def sdist_names(self) -> list[str]:
        prefix = f"evobs-{evobs.__version__}/"
        with tarfile.open(self.sdist) as sdist:
            return [m.name.removeprefix(prefix) for m in sdist.getmembers() if m.isfile()]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """The wheel and sdist, built from a copy of the source tree as `make dist` builds them."""
    work = tmp_path_factory.mktemp("dist")
    source = work / "src"
    sources = _source_files()
    for name in sources:
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    outdir = work / "out"
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(outdir), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    yield Built(outdir, done.stdout + done.stderr, sources)


def test_build_prints_no_setuptools_warning(built: Built) -> None:
    """Building the sdist and the wheel prints no warning class and nothing deprecated (a
    TOML-table `project.license` made setuptools warn on every build and install)."""
    warnings = [line for line in built.output.splitlines() if WARNING_CLASS.search(line)]
    assert warnings == []


def test_twine_check_strict(built: Built) -> None:
    """Both files pass `twine check --strict` (metadata valid, README renders)."""
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(built.wheel), str(built.sdist)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_wheel_holds_the_package_and_nothing_else(built: Built) -> None:
    """The wheel holds every file of the evobs package, py.typed included, its licence, and
    no tests, docs or backend configuration."""
    names = built.wheel_names()
    dist_info = f"evobs-{evobs.__version__}.dist-info/"
    package = {n for n in names if not n.startswith(dist_info)}
    assert "evobs/py.typed" in package
    assert package == {s for s in built.sources if s.startswith("evobs/")}
    assert not [n for n in names if n.startswith(("tests/", "docs/", "exporters/"))]
    assert f"{dist_info}licenses/LICENSE" in names
    assert f"{dist_info}entry_points.txt" in names


def test_wheel_metadata_is_what_pyproject_declares(built: Built) -> None:
    """Name, version (the same as evobs.__version__), licence expression, Python bound,
    every requirement and every extra in the wheel's METADATA are those of pyproject.toml."""
    project = PYPROJECT["project"]
    meta = built.wheel_metadata()
    assert meta["Name"] == project["name"] == "evobs"
    assert meta["Version"] == project["version"] == evobs.__version__
    assert meta["License-Expression"] == project["license"] == "Apache-2.0"
    assert meta.get_all("License-File") == project["license-files"] == ["LICENSE"]
    assert meta["Requires-Python"] == project["requires-python"]
    assert set(meta.get_all("Provides-Extra")) == set(project["optional-dependencies"])
    assert "boto3" in meta.get_all("Provides-Extra")

    declared = {str(Requirement(r)) for r in project["dependencies"]}
    for extra, requirements in project["optional-dependencies"].items():
        declared |= {str(Requirement(f'{r}; extra == "{extra}"')) for r in requirements}
    assert {str(Requirement(r)) for r in meta.get_all("Requires-Dist")} == declared
    # boto3 is an extra, never a plain dependency: botocore alone is enough to run evobs.
    assert not [r for r in project["dependencies"] if Requirement(r).name == "boto3"]


def test_sdist_is_the_whole_source(built: Built) -> None:
    """The sdist holds every source file (tests, docs, exporters, dashboards, Makefile) but
    CI's and git's, so `make test` runs from an unpacked sdist."""
    names = {n for n in built.sdist_names() if not SDIST_GENERATED.match(n)}
    expected = {s for s in built.sources if not s.startswith(NOT_IN_SDIST)}
    assert names == expected
    assert {"tests/conftest.py", "Makefile", "LICENSE", "docs/quickstart.md"} <= names


def test_wheel_installs_as_the_quickstart_says(built: Built, tmp_path: Path) -> None:
    """`pip install 'evobs-<version>-py3-none-any.whl[boto3]'` into a fresh virtual
    environment: the `evobs` command runs, and `evobs.instrument()` finds boto3."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{built.wheel}[boto3]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    version = subprocess.run(
        [str(venv / "bin" / "evobs"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.stdout.strip() == f"evobs {evobs.__version__}", version.stderr
    probe = (
        "import boto3, evobs, importlib.resources as r; "
        "handle = evobs.instrument(); "
        "assert handle.target is boto3.DEFAULT_SESSION; "
        "assert r.files('evobs').joinpath('py.typed').is_file(); "
        "print(evobs.__file__)"
    )
    used = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert used.returncode == 0, used.stderr
    assert used.stdout.strip().startswith(str(venv)), used.stdout
