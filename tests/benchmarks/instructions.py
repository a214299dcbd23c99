"""Instruction counts: the per-call cost and the cold start, counted rather than timed.

CPU time on a shared machine moves with whatever else runs; the number of
instructions a process executes does not. Each variant runs twice, in fresh
processes under the same fixed environment, with N1 < N2 calls; instructions
per call = (I2 - I1) / (N2 - N1), so interpreter start-up, imports, warm-up and
the emission proofs after the calls cancel out. The counter is ``perf stat -e
instructions:u`` where the kernel exposes it, else valgrind's callgrind (no
cache or branch simulation: only instructions are wanted).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .child import (
    LABELS,
    LOG_VARIANTS,
    METRIC_VARIANTS,
    RESULT_PREFIX,
    SPAN_VARIANTS,
)
from .child import VARIANTS as ALL_VARIANTS
from .cold import MODULES_PREFIX
from .cold import VARIANTS as COLD_VARIANTS

ROOT: Final = Path(__file__).resolve().parents[2]
COLD_SCRIPT: Final = Path(__file__).resolve().with_name("cold.py")

WORKLOADS: Final = ("canned", "retry")
VARIANTS: Final = ALL_VARIANTS
#: DESIGN 7's floor: the spans of evobs's contract (a call span, and on a retried call
#: one per attempt) through the SDK's public ``start_span`` and nothing else
#: (``child._Floor``). A target whose ceiling lies below it is reported as such.
FLOOR: Final = "floor"
#: Per workload: (warm-up calls, N1, N2), full and --quick; multiples of the three
#: operations of one round. Two runs of one variant differ by up to ~0.7 M instructions
#: in all (pymalloc's arena bookkeeping shifts with the few allocations that depend on
#: wall time, such as evobs's once-a-second exemplars), so N2 - N1 = 300 keeps that
#: under ~2.5 k per call; under callgrind a call takes ~45 ms (canned) to ~75 ms (retry).
SIZES: Final = {
    "canned": ((30, 30, 330), (6, 3, 9)),
    "retry": ((30, 30, 330), (6, 3, 9)),
}
#: What ``--quick`` counts unless told otherwise (under callgrind every process pays
#: ~1.2 G instructions of start-up, ~10 s).
QUICK_VARIANTS: Final = ("baseline", "evobs-all", "peer")
QUICK_COLD: Final = ("baseline", "evobs-all")
#: (workload, evobs variant, ceiling of its overhead / the peer's), all three signals.
TARGETS: Final = (
    ("canned", "evobs-all", 0.40),
    ("retry", "evobs-all", 0.70),
)
#: Cold start goals: (setup, ceiling of its instructions / boto3 alone's).
COLD_GOALS: Final = (("evobs-all", 1.10), ("evobs-traces", 1.05))
#: Where the interpreter's objects land (addresses) and how strings hash (the seed)
#: move a per-call count by up to ~14 k with nothing changed on the path; a change
#: anywhere (even the install) picks another draw. The rows a target is judged on are
#: counted at this many (seed, layout) draws, the k-th with ``PYTHONHASHSEED=k`` and
#: memory layout k (``child._shift_layout``), and their median taken.
TARGET_SEEDS: Final = 5
#: The rows each target's ratio is made of, beside its own, and the floor it is read against.
JUDGED_BY: Final = ("baseline", "peer", FLOOR)

#: Under a counter a call takes ~50x as long, so evobs's retry-log limiter (1/s per
#: operation) would let through ~50x the share of retry events it does at full speed,
#: and how many would depend on the machine's load. Natively a 503-503-200 storm
#: logs ~0.1 % of its retries; a rate too small to refill gives the same regime
#: (10 events in the warm-up, then all counted as suppressed) deterministically.
EVOBS_OPTIONS: Final = {"retry": {"retry_log_rate": 1e-9}}


# -- the counter ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Counter:
    """How to count a process's instructions."""

    name: str
    describe: str

    def command(self, argv: Sequence[str], out: Path) -> list[str]:
        if self.name == "perf":
            return ["perf", "stat", "-x,", "-e", "instructions:u", "-o", str(out), "--", *argv]
        return [
            "valgrind",
            "--tool=callgrind",
            "--cache-sim=no",
            "--branch-sim=no",
            "--dump-line=no",
            f"--callgrind-out-file={out}",
            *argv,
        ]

    def read(self, out: Path) -> int:
        text = out.read_text()
        if self.name == "perf":
            for line in text.splitlines():
                fields = line.split(",")
                if len(fields) > 2 and fields[2].startswith("instructions"):
                    return int(fields[0])
            raise ValueError(f"no instructions in perf's output: {text[-300:]!r}")
        for line in text.splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
        raise ValueError("no summary in callgrind's output")


def _perf_counts() -> bool:
    """``perf stat -e instructions:u`` gives a number here (not ``<not supported>``)."""
    if shutil.which("perf") is None:
        return False
    try:
        proc = subprocess.run(
            ["perf", "stat", "-x,", "-e", "instructions:u", "true"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    for line in proc.stderr.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2].startswith("instructions"):
            return fields[0].strip().isdigit()
    return False


def find_counter(choice: str = "auto") -> Counter | None:
    """perf where the kernel counts instructions, else callgrind; None: neither here."""
    if choice in ("auto", "perf") and _perf_counts():
        return Counter("perf", "`perf stat -e instructions:u`")
    if choice == "perf":
        return None
    if shutil.which("valgrind") is not None:
        return Counter(
            "callgrind", "valgrind's callgrind (`--cache-sim=no --branch-sim=no`, total Ir)"
        )
    return None


def fixed_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The same few variables for every counted process: nothing of the caller's
    environment (its size and content change start-up work) reaches the count."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.update(extra or {})
    return env


def counted(
    counter: Counter, argv: Sequence[str], timeout: float = 1800, seed: int = 0
) -> tuple[int | None, str, str]:
    """Run ``argv`` under the counter, with ``PYTHONHASHSEED=seed``: (instructions or
    None, stdout, error text)."""
    with tempfile.TemporaryDirectory(prefix="evobs-bench-") as tmp:
        out = Path(tmp) / "count.out"
        try:
            proc = subprocess.run(
                counter.command(argv, out),
                cwd=ROOT,
                env=fixed_environment({"PYTHONHASHSEED": str(seed)}),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None, "", f"timed out after {timeout:.0f} s"
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout)[-2000:]
            return None, proc.stdout, f"exit {proc.returncode}: {tail}"
        try:
            return counter.read(out), proc.stdout, ""
        except (OSError, ValueError) as exc:
            return None, proc.stdout, str(exc)


def _last_line(text: str) -> str:
    """The error's last line, not valgrind's own ``==pid==`` summary after it."""
    lines = [line for line in text.strip().splitlines() if not line.startswith("==")]
    return lines[-1][:200] if lines else ""


def _child_argv(spec: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "tests.benchmarks.child", json.dumps(spec)]


def _child_result(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    return None


# -- per call --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    workload: str
    variant: str


@dataclass
class Pair:
    """One (N1, N2) pair of counted runs of a variant."""

    per_call: float
    calls: tuple[int, int]
    instructions: tuple[int, int]
    emitted: dict[str, Any]


@dataclass
class Row:
    key: Key
    pairs: list[Pair] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def per_call(self) -> float | None:
        return statistics.median(p.per_call for p in self.pairs) if self.pairs else None

    @property
    def spread(self) -> float | None:
        """max - min over the repeats (0 with a single pair)."""
        if not self.pairs:
            return None
        values = [p.per_call for p in self.pairs]
        return max(values) - min(values)


def spec_for(key: Key, calls: int, warmup: int, layout: int = 0) -> dict[str, Any]:
    return {
        "mode": "count",
        "workload": key.workload,
        "variant": key.variant,
        "processor": "simple",
        "warmup": warmup,
        "calls": calls,
        "evobs_options": EVOBS_OPTIONS.get(key.workload, {})
        if key.variant.startswith("evobs")
        else {},
        "layout": layout,
    }


def _per_call_emission(
    key: Key, first: dict[str, Any], second: dict[str, Any], calls: int
) -> dict[str, Any]:
    def diff(name: str) -> float | None:
        a, b = first.get(name), second.get(name)
        return None if a is None or b is None else (b - a) / calls

    return {
        "spans_per_call": diff("spans"),
        "metric_calls_per_call": diff("metric_calls"),
        "logs_per_call": diff("logs"),
        "logs_proof_per_call": second.get("logs_proof_per_call"),
        "order_ok": second.get("order_ok"),
        "span_path": second.get("span_path"),
    }


def check(key: Key, emitted: dict[str, Any]) -> list[str]:
    """Why a pair cannot count (empty: the variant proved it emitted what it should)."""
    problems = []
    variant = key.variant
    if variant.startswith("evobs") and not emitted.get("order_ok"):
        problems.append("evobs's before-send did not run before the canned responder")
    if (variant in SPAN_VARIANTS or variant == "xray") and not (
        emitted.get("spans_per_call") or 0
    ) >= 1:
        problems.append(f"spans/call {emitted.get('spans_per_call')}")
    if variant in METRIC_VARIANTS:
        counted_calls = emitted.get("metric_calls_per_call")
        if counted_calls is None or abs(counted_calls - 1.0) > 0.01:
            problems.append(f"calls in the call-duration metric per call: {counted_calls}")
    if variant in LOG_VARIANTS and not (emitted.get("logs_proof_per_call") or 0) >= 1:
        problems.append(f"log events per failing call: {emitted.get('logs_proof_per_call')}")
    return problems


def _job(
    counter: Counter, spec: dict[str, Any], seed: int
) -> tuple[int | None, dict[str, Any] | None, str]:
    instructions, stdout, error = counted(counter, _child_argv(spec), seed=seed)
    result = _child_result(stdout)
    if result is None and not error:
        error = "no result line"
    return instructions, result, error


def prime(specs: Iterable[dict[str, Any]], cold_variants: Iterable[str], jobs: int) -> None:
    """Run every setup once, uncounted: the first run of a changed module compiles
    and writes its .pyc, which would land in one counted run and not its pair."""
    argvs = [_child_argv(dict(spec, calls=3, warmup=3)) for spec in specs]
    argvs += [[sys.executable, str(COLD_SCRIPT), v] for v in cold_variants]
    env = fixed_environment()

    def run(argv: list[str]) -> None:
        subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=600, check=False)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(run, argvs))


def run_per_call(
    counter: Counter,
    workloads: Sequence[str],
    variants: Sequence[str],
    quick: bool,
    repeat: int | None,
    jobs: int,
    progress: Callable[[str], None],
) -> dict[Key, Row]:
    """Every (workload, variant) counted as (N1, N2) pairs, the k-th pair of a row with
    ``PYTHONHASHSEED=k`` at memory layout k: ``repeat`` pairs each, or (None)
    ``TARGET_SEEDS`` for the rows the targets are judged on and one for the rest. A
    row's figure is the median."""
    keys = [Key(w, v) for w in workloads for v in ("baseline", *variants) if v in VARIANTS]
    keys = list(dict.fromkeys(keys))
    rows = {k: Row(k) for k in keys}
    judged = {(w, v) for w, v, _ in TARGETS} | {(w, v) for w, *_ in TARGETS for v in JUDGED_BY}
    jobs_list: list[tuple[Key, int, dict[str, Any], int]] = []
    for key in keys:
        if repeat is not None:
            seeds = repeat
        else:
            seeds = TARGET_SEEDS if (key.workload, key.variant) in judged and not quick else 1
        warmup, n1, n2 = SIZES[key.workload][1 if quick else 0]
        for seed in range(seeds):
            for calls in (n1, n2):
                jobs_list.append((key, calls, spec_for(key, calls, warmup, seed), seed))
    done: dict[tuple[Key, int], list[tuple[int | None, dict[str, Any] | None, str]]] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [
            (key, calls, pool.submit(_job, counter, spec, seed))
            for key, calls, spec, seed in jobs_list
        ]
        for n, (key, calls, future) in enumerate(futures, 1):
            instructions, result, error = future.result()
            done.setdefault((key, calls), []).append((instructions, result, error))
            what = f"{key.workload:7} {key.variant:14} N={calls:<4}"
            line = f"{instructions:,} instructions" if instructions else f"ERROR {error[-160:]}"
            progress(f"instructions [{n}/{len(futures)}] {what} {line}")
    for key in keys:
        warmup, n1, n2 = SIZES[key.workload][1 if quick else 0]
        for (i1, r1, e1), (i2, r2, e2) in zip(done[(key, n1)], done[(key, n2)], strict=True):
            row = rows[key]
            if i1 is None or i2 is None or r1 is None or r2 is None:
                error = _last_line(e1 or e2) or "failed"
                if error not in row.problems:
                    row.problems.append(error)
                continue
            calls = r2["calls"] - r1["calls"]
            emitted = _per_call_emission(key, r1, r2, calls)
            problems = check(key, emitted)
            if problems:
                row.problems.extend(p for p in problems if p not in row.problems)
                continue
            row.pairs.append(Pair((i2 - i1) / calls, (r1["calls"], r2["calls"]), (i1, i2), emitted))
    return rows


def overhead(rows: dict[Key, Row], key: Key) -> float | None:
    mine = rows[key].per_call if key in rows else None
    base_key = Key(key.workload, "baseline")
    base = rows[base_key].per_call if base_key in rows else None
    return None if mine is None or base is None else mine - base


def ratio_to_peer(rows: dict[Key, Row], key: Key) -> float | None:
    mine = overhead(rows, key)
    theirs = overhead(rows, Key(key.workload, "peer"))
    return None if mine is None or theirs is None or theirs <= 0 else mine / theirs


# -- cold start ------------------------------------------------------------------------------


@dataclass
class Cold:
    variant: str
    instructions: list[int] = field(default_factory=list)
    modules: frozenset[str] = frozenset()
    problems: list[str] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.instructions) if self.instructions else None


def run_cold(
    counter: Counter,
    variants: Sequence[str],
    repeat: int,
    jobs: int,
    progress: Callable[[str], None],
) -> dict[str, Cold]:
    """Each cold-start setup counted ``repeat`` times, whole process, the k-th time
    with ``PYTHONHASHSEED=k``."""
    results = {v: Cold(v) for v in variants}
    work = [(v, seed) for seed in range(repeat) for v in variants]

    def one(variant: str, seed: int) -> tuple[int | None, str, str]:
        return counted(counter, [sys.executable, str(COLD_SCRIPT), variant], seed=seed)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [(v, pool.submit(one, v, seed)) for v, seed in work]
        for n, (variant, future) in enumerate(futures, 1):
            instructions, stdout, error = future.result()
            cold = results[variant]
            modules = [
                line[len(MODULES_PREFIX) :].split()
                for line in stdout.splitlines()
                if line.startswith(MODULES_PREFIX)
            ]
            if instructions is None or not modules:
                cold.problems.append(_last_line(error) or "no module list")
                line = f"ERROR {cold.problems[-1]}"
            else:
                cold.instructions.append(instructions)
                cold.modules = frozenset(modules[-1])
                line = f"{instructions:,} instructions, {len(modules[-1])} modules"
            progress(f"cold [{n}/{len(futures)}] {variant:13} {line}")
    return results


def module_roots(modules: Iterable[str], already: frozenset[str]) -> list[tuple[str, int]]:
    """The modules not in ``already``, as their outermost new packages with how many
    modules each brings: ``opentelemetry.sdk.trace.export (2)`` when the rest of
    ``opentelemetry.sdk.trace`` was already loaded."""
    new = sorted(set(modules) - already)
    new_set = set(new)
    roots: dict[str, int] = {}
    for name in new:
        root = name
        while "." in root and root.rpartition(".")[0] in new_set:
            root = root.rpartition(".")[0]
        roots[root] = roots.get(root, 0) + 1
    return sorted(roots.items(), key=lambda item: (-item[1], item[0]))


def grouped(roots: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Roots that share a parent below the top level shown once as ``parent.*``
    (the peer loads a dozen sibling semantic-convention modules)."""
    siblings: dict[str, list[tuple[str, int]]] = {}
    for name, n in roots:
        siblings.setdefault(name.rpartition(".")[0], []).append((name, n))
    out: list[tuple[str, int]] = []
    for parent, members in siblings.items():
        if "." in parent and len(members) > 2:
            out.append((f"{parent}.*", sum(n for _, n in members)))
        else:
            out.extend(members)
    return sorted(out, key=lambda item: (-item[1], item[0]))


# -- the report ------------------------------------------------------------------------------


def _m(value: float | None, none: str = "n/a") -> str:
    """Instructions, in thousands or millions."""
    if value is None:
        return none
    if abs(value) >= 10e6:
        return f"{value / 1e6:,.1f} M"
    return f"{value / 1e3:,.1f} k"


def _r(value: float | None, spec: str = ".2f", none: str = "n/a") -> str:
    return none if value is None else format(value, spec)


def _span_path(emitted: dict[str, Any]) -> str:
    path = emitted.get("span_path")
    if not path:
        return "-"
    via, direct = path.get("via_start_span", 0), path.get("direct", 0)
    if via and not direct:
        return "start_span"
    if direct and not via:
        return "direct"
    return f"{via} start_span, {direct} direct" if via or direct else "not seen"


def api_label(rows: dict[Key, Row]) -> str:
    """The public-API row's name, saying so when the switch changed nothing."""
    for row in rows.values():
        if (
            row.key.variant == "evobs-all-api"
            and row.pairs
            and _span_path(row.pairs[-1].emitted) != "start_span"
        ):
            return LABELS["evobs-all-api"] + " [switch not honoured: spans still direct]"
    return LABELS["evobs-all-api"]


def targets_lines(rows: dict[Key, Row]) -> list[str]:
    lines = [
        "| target | evobs overhead | peer overhead | ratio | met "
        "| floor: bare SDK start_span, same spans | ÷ peer "
        "| public-API spans: overhead | ÷ peer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for workload, variant, ceiling in TARGETS:
        key = Key(workload, variant)
        if key not in rows:
            continue
        peer = Key(workload, "peer")
        api = Key(workload, "evobs-all-api")
        floor = Key(workload, FLOOR)
        ratio = ratio_to_peer(rows, key)
        floor_ratio = ratio_to_peer(rows, floor) if floor in rows else None
        valid = not rows[key].problems and peer in rows and not rows[peer].problems
        met = "n/a" if ratio is None else ("yes" if ratio <= ceiling and valid else "**no**")
        if met == "**no**" and floor_ratio is not None and floor_ratio > ceiling:
            met += ": below the floor"
        lines.append(
            f"| {workload}: {LABELS[variant]} ≤ {ceiling:.2f} x peer "
            f"| {_m(overhead(rows, key))} | {_m(overhead(rows, peer))} "
            f"| {_r(ratio, '.3f')} | {met} "
            f"| {_m(overhead(rows, floor) if floor in rows else None)} | {_r(floor_ratio)} "
            f"| {_m(overhead(rows, api) if api in rows else None)} "
            f"| {_r(ratio_to_peer(rows, api) if api in rows else None)} |"
        )
    return lines


def table_lines(rows: dict[Key, Row], workload: str) -> list[str]:
    base = rows.get(Key(workload, "baseline"))
    lines = []
    if base is not None and base.pairs:
        pair = base.pairs[-1]
        lines += [
            f"Baseline (boto3 alone): {_m(base.per_call)} instructions per call "
            f"(N1 = {pair.calls[0]}, N2 = {pair.calls[1]} calls after the warm-up).",
            "",
        ]
    lines += [
        "| variant | instructions/call | overhead | x baseline | overhead ÷ peer's "
        "| spans/call | calls in metrics/call | log events/call (per failing call) "
        "| spans reach the provider via | repeats: spread | valid |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in rows.items():
        if key.workload != workload:
            continue
        emitted = row.pairs[-1].emitted if row.pairs else {}
        logs = _r(emitted.get("logs_per_call"), ".3f", "")
        if emitted.get("logs_proof_per_call") is not None:
            logs += f" ({emitted['logs_proof_per_call']:.2f})"
        base_per_call = base.per_call if base is not None else None
        x_base = (
            row.per_call / base_per_call if row.per_call is not None and base_per_call else None
        )
        spread = (
            f"{len(row.pairs)}: {_m(row.spread)}"
            if row.pairs and len(row.pairs) > 1
            else (str(len(row.pairs)) if row.pairs else "-")
        )
        label = api_label(rows) if key.variant == "evobs-all-api" else LABELS[key.variant]
        valid = "yes" if not row.problems else "**no**: " + "; ".join(row.problems)
        is_base = key.variant == "baseline"
        lines.append(
            f"| {label} | {_m(row.per_call)} | {'-' if is_base else _m(overhead(rows, key))} "
            f"| {_r(x_base, '.3f')} "
            f"| {'-' if is_base else _r(ratio_to_peer(rows, key), '.2f', '-')} "
            f"| {_r(emitted.get('spans_per_call'), '.2f', '-')} "
            f"| {_r(emitted.get('metric_calls_per_call'), '.2f', '-')} "
            f"| {logs or '-'} | {_span_path(emitted)} | {spread} | {valid} |"
        )
    return lines


def cold_lines(cold: dict[str, Cold]) -> list[str]:
    base = cold.get("baseline")
    base_value = base.median if base is not None else None
    peer = cold.get("peer")
    peer_ratio = (
        peer.median / base_value if peer is not None and peer.median and base_value else None
    )
    goals = dict(COLD_GOALS)
    sdk = cold.get("sdk")
    sdk_ratio = sdk.median / base_value if sdk is not None and sdk.median and base_value else None
    lines = [
        "| setup | instructions | x boto3 alone | + over boto3 alone | goal | met "
        "| repeats: spread |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, result in cold.items():
        value = result.median
        ratio = value / base_value if value is not None and base_value else None
        extra = None if value is None or base_value is None else value - base_value
        goal = goals.get(variant)
        if goal is None or ratio is None:
            goal_text, met = "-", "-"
        else:
            goal_text = f"≤ {goal:.2f} x (peer: {_r(peer_ratio, '.3f')} x)"
            met = "yes" if ratio <= goal and not result.problems else "**no**"
            if met == "**no**" and sdk_ratio is not None and sdk_ratio > goal:
                met += ": below the floor"
        spread = (
            f"{len(result.instructions)}: {_m(max(result.instructions) - min(result.instructions))}"
            if len(result.instructions) > 1
            else str(len(result.instructions))
        )
        if result.problems:
            spread += " (**failed**: " + "; ".join(result.problems) + ")"
        lines.append(
            f"| {LABELS[variant]} | {_g(value)} | {_r(ratio, '.3f')} "
            f"| {'-' if variant == 'baseline' else _g(extra, signed=True)} | {goal_text} | {met} "
            f"| {spread} |"
        )
    return lines


def _g(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1e9:{'+' if signed else ''}.3f} G"


def modules_lines(cold: dict[str, Cold], limit: int = 40) -> list[str]:
    base = cold.get("baseline")
    sdk = cold.get("sdk")
    if base is None or not base.modules:
        return []
    lines = [
        "| setup | modules beyond boto3 alone's | of which beyond boto3 + SDK TracerProvider's "
        "(outermost new package, modules it brings) |",
        "|---|---|---|",
    ]
    for variant, result in cold.items():
        if variant == "baseline" or not result.modules:
            continue
        beyond_base = module_roots(result.modules, base.modules)
        total = sum(n for _, n in beyond_base)
        tops = ", ".join(f"{name} ({n})" for name, n in beyond_base[:limit])
        if variant == "sdk" or sdk is None or not sdk.modules:
            detail = "-"
        else:
            own = grouped(module_roots(result.modules, sdk.modules))
            shown = ", ".join(f"`{name}` ({n})" for name, n in own[:limit])
            more = f", ... {len(own) - limit} more" if len(own) > limit else ""
            detail = f"{sum(n for _, n in own)}: {shown}{more}" if own else "none"
        lines.append(f"| {LABELS[variant]} | {total}: {tops} | {detail} |")
    return lines


def _repeats_text(repeat: int | None, quick: bool) -> str:
    if repeat is not None or quick:
        n = 1 if repeat is None else repeat
        return (
            f"Each pair ran {n} time(s), the k-th with `PYTHONHASHSEED=k` and memory layout "
            "k (from 0)."
        )
    return (
        f"The rows the targets are judged on (boto3 alone, the peer, evobs) ran "
        f"{TARGET_SEEDS} pairs, the k-th with `PYTHONHASHSEED=k` and memory layout k "
        "(from 0), the others one (seed and layout 0). Layout k: k x 997 small objects of "
        "every size class allocated before anything else, which moves every later address. "
        "Where objects land and how strings hash move the interpreter's own work (its "
        "method cache is indexed by the addresses of interned names; objects hash by "
        "address): with nothing changed on the path, one draw differs from another by up "
        "to ~14 k per call, and any change (even the install) picks another draw. The "
        "median over draws settles that; *repeats: spread* shows it."
    )


def report_lines(
    counter: Counter,
    rows: dict[Key, Row],
    cold: dict[str, Cold],
    quick: bool,
    repeat: int | None,
    workloads: Sequence[str],
) -> list[str]:
    sizes = ", ".join(
        f"{w}: warm-up {SIZES[w][1 if quick else 0][0]}, N1 {SIZES[w][1 if quick else 0][1]}, "
        f"N2 {SIZES[w][1 if quick else 0][2]}"
        for w in workloads
    )
    out = [
        "## Instructions (targets judged here)",
        "",
        f"Counted with {counter.describe}. Each variant runs twice, each time in a fresh "
        "process with the same fixed environment (a few fixed variables), with N1 and N2 "
        "calls after the same warm-up; instructions per call = (I2 - I1) / (N2 - N1), so "
        "start-up, imports, warm-up and the emission proofs after the calls cancel out "
        f"({sizes}). {_repeats_text(repeat, quick)} *repeats: spread* is max - min of "
        "instructions per call over a row's pairs, its figure their median. Everything else "
        "as in the CPU "
        "section below (canned and retry workloads, SimpleSpanProcessor, a counting exporter, "
        "an application's logging at WARNING), and:",
        "",
        "- After the warm-up every surviving object is frozen (`gc.freeze()`), so a full "
        "garbage collection, whose cost depends on everything imported rather than on the "
        "calls, cannot fall into one run of a pair and not the other; young-generation "
        "collections, which the calls cause, are counted.",
        "- retry: evobs's retry-log limiter runs in its storm regime (`retry_log_rate=1e-9`): "
        "under a counter a call takes ~50x as long, so at the default 1/s per operation it "
        "would log ~50x the share of retries it logs at full speed (~0.1 % in a 503-503-200 "
        "storm), and a share that depends on the machine's load.",
        "- Duration exemplars: evobs builds one per histogram bucket at most once a second "
        "(wall clock), natively one per ~16,000 calls of a bucket; under a counter 36 % of "
        "the calls would build one. Counted children stretch that interval to an hour "
        "before the warm-up (which still builds each bucket's first), the native regime.",
        "- *spans reach the provider via*: after the counted calls a span processor is added "
        "that looks for `Tracer.start_span` on the stack in `on_start`: `start_span` (the "
        "public API) or `direct` (evobs's span path hands its spans to the processors).",
        "- The X-Ray SDK row (`aws-xray-sdk`, its botocore patch) is informational: one "
        "segment opened at start, a subsegment per call streamed to an emitter that only "
        "counts (no daemon, nothing serialised); it keeps no metrics or logs.",
        "- *evobs OpenTelemetry metrics only*: the `otel_metrics` signal into an SDK "
        "MeterProvider whose only reader is in memory and collects only for the proof after "
        "the counted calls (nothing exported); no span is current, so the SDK offers no "
        "exemplars.",
        "",
        "### Targets (instructions)",
        "",
        "*floor* (DESIGN 7): the spans of evobs's contract, a call span with ten attributes "
        "current for the call and, on a retried call, one child span per attempt, made "
        "through the SDK's public `start_span` by two botocore handlers that do nothing "
        "else (no metrics, no logs, no error classification). *below the floor*: the "
        "ceiling is under what those spans alone cost through the SDK's API; evobs makes "
        "the same spans through the SDK's own parts instead "
        "([telemetry.md](telemetry.md#how-spans-reach-your-provider)).",
        "",
        *targets_lines(rows),
        "",
    ]
    for workload in workloads:
        out += [f"### {workload} (instructions)", "", *table_lines(rows, workload), ""]
    if cold:
        out += [
            "### Cold start (instructions)",
            "",
            "Whole process (`python tests/benchmarks/cold.py SETUP`): interpreter start, "
            "`import boto3`, create an SDK TracerProvider, instrument the session, create an "
            "S3 client. *boto3 + SDK TracerProvider* is the floor every OpenTelemetry "
            "instrumentation starts from: a goal below it cannot be met by the "
            "instrumentation alone.",
            "",
            *cold_lines(cold),
            "",
            "Modules each setup loads beyond boto3 alone's, and beyond boto3 + SDK "
            "TracerProvider's (what the instrumentation itself pulls in: candidates for "
            "lazy imports):",
            "",
            *modules_lines(cold),
            "",
        ]
    return out


def raw(rows: dict[Key, Row], cold: dict[str, Cold]) -> dict[str, Any]:
    """Everything measured, for ``--json``."""
    return {
        "per_call": [
            {
                "key": vars(row.key),
                "per_call": row.per_call,
                "pairs": [vars(p) for p in row.pairs],
                "problems": row.problems,
            }
            for row in rows.values()
        ],
        "cold": [
            {
                "variant": c.variant,
                "instructions": c.instructions,
                "modules": sorted(c.modules),
                "problems": c.problems,
            }
            for c in cold.values()
        ],
    }


__all__ = [
    "COLD_VARIANTS",
    "Counter",
    "Key",
    "find_counter",
    "module_roots",
    "prime",
    "raw",
    "report_lines",
    "run_cold",
    "run_per_call",
    "spec_for",
]
