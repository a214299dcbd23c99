"""``python -m tests.benchmarks`` (``make bench``): count the instructions every
variant executes per call and at cold start (tests/benchmarks/instructions.py; the
targets are judged on these), then time them in CPU (every variant in fresh
processes, each paired with the baseline of its round) as a second opinion; print
the report and write ``docs/performance.md``.

``--only instructions`` or ``--only cpu`` runs one mode. ``--quick`` is a short run
for smoke tests and development (it writes nothing unless ``--output`` is given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from . import instructions
from .child import (
    LABELS,
    LOG_VARIANTS,
    METRIC_VARIANTS,
    OTHER_TRACER_VARIANTS,
    RESULT_PREFIX,
    SPAN_VARIANTS,
    VARIANTS,
    WORKLOADS,
)

ROOT: Final = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT: Final = ROOT / "docs" / "performance.md"

#: Calls per child: (warmup, batches, calls per batch), full and --quick.
SIZES: Final = {
    "canned": ((300, 16, 150), (30, 2, 30)),
    "retry": ((90, 16, 60), (15, 2, 15)),
    "loopback": ((60, 10, 60), (9, 2, 15)),
}
SOAK: Final = ((20_000, 200_000), (300, 1_500))

#: Variants the CPU mode runs unless ``--variants`` names others: all but the public-API
#: span switch, the OpenTelemetry metrics signal (its CPU cost per call:
#: ``tests.benchmarks.metrics_signals``) and the X-Ray SDK, which only the instruction
#: counts report.
CPU_VARIANTS: Final = tuple(
    v for v in VARIANTS if v not in ("evobs-all-api", "evobs-otel-metrics", "xray")
)
MODES: Final = ("instructions", "cpu")

#: CPU time, the second opinion: (workload, variant, ceiling of overhead / peer
#: overhead) with the same span processor.
TARGETS: Final = (
    ("canned", "evobs-traces", 0.5),
    ("canned", "evobs-all", 0.6),
    ("retry", "evobs-all", 1.0),
)
#: Soak: memory counts as flat if it grows by at most this much from the first checkpoint.
SOAK_RSS_MB: Final = 2.0
SOAK_OBJECTS: Final = 2_000


@dataclass(frozen=True)
class Key:
    workload: str
    variant: str
    processor: str | None


@dataclass
class Row:
    key: Key
    results: list[dict[str, Any]] = field(default_factory=list)
    baselines: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# -- running children ----------------------------------------------------------------


def run_child(spec: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    """Run one variant in a fresh interpreter and return its result dict."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.child", json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    tail = (proc.stderr or proc.stdout)[-2000:]
    return {"spec": spec, "error": f"exit {proc.returncode}: {tail}"}


@contextmanager
def loopback_endpoint() -> Iterator[str]:
    """moto's server in this (idle) parent process, with the table and bucket the
    children read; the server's CPU is not charged to the children."""
    import boto3

    from evobs.demo.aws import start_moto_server

    server, url = start_moto_server()
    try:
        session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        ddb = session.client("dynamodb", endpoint_url=url)
        ddb.create_table(
            TableName="bench",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.put_item(TableName="bench", Item={"pk": {"S": "k"}, "v": {"N": "1"}})
        s3 = session.client("s3", endpoint_url=url)
        s3.create_bucket(Bucket="bench")
        for i in range(10):
            s3.put_object(Bucket="bench", Key=f"object-{i:02d}", Body=b"foo")
        yield url
    finally:
        server.stop()


def plan(args: argparse.Namespace) -> list[Key]:
    keys = []
    for workload in args.workloads:
        keys.append(Key(workload, "baseline", None))
        for variant in args.variants:
            if variant == "baseline":
                continue
            if variant in SPAN_VARIANTS:
                keys.extend(Key(workload, variant, p) for p in args.processors)
            else:
                keys.append(Key(workload, variant, None))
    return keys


def spec_for(key: Key, quick: bool, endpoint: str | None) -> dict[str, Any]:
    warmup, batches, batch_calls = SIZES[key.workload][1 if quick else 0]
    return {
        "workload": key.workload,
        "variant": key.variant,
        "processor": key.processor,
        "warmup": warmup,
        "batches": batches,
        "batch_calls": batch_calls,
        "endpoint": endpoint if key.workload == "loopback" else None,
    }


def check(key: Key, result: dict[str, Any]) -> list[str]:
    """Why a result cannot count (empty: it proved it emitted what it should)."""
    if "error" in result:
        return [result["error"].strip().splitlines()[-1][:200]]
    problems = []
    variant = key.variant
    if variant.startswith("evobs") and key.workload != "loopback" and not result.get("order_ok"):
        problems.append("evobs's before-send did not run before the canned responder")
    spans = SPAN_VARIANTS + OTHER_TRACER_VARIANTS
    if variant in spans and not (result.get("spans_per_call") or 0) >= 1:
        problems.append(f"spans/call {result.get('spans_per_call')}")
    if variant in METRIC_VARIANTS:
        counted = result.get("metric_calls_per_call")
        if counted is None or abs(counted - 1.0) > 0.01:
            problems.append(f"calls in the call-duration metric per call: {counted}")
    if variant in LOG_VARIANTS:
        proof = result.get("logs_proof_per_call")
        if not (proof or 0) >= 1:
            problems.append(f"log events per failing call: {proof}")
    return problems


def run_all(args: argparse.Namespace) -> dict[Key, Row]:
    keys = plan(args)
    rows = {k: Row(k) for k in keys}
    rng = random.Random(args.seed)
    needs_loopback = "loopback" in args.workloads
    with loopback_endpoint() if needs_loopback else _no_endpoint() as endpoint:
        for round_no in range(args.rounds):
            order = keys[:]
            rng.shuffle(order)
            baselines: dict[str, dict[str, Any]] = {}
            results: dict[Key, dict[str, Any]] = {}
            for n, key in enumerate(order, 1):
                result = run_child(spec_for(key, args.quick, endpoint))
                _progress(f"round {round_no + 1}/{args.rounds} [{n}/{len(order)}] ", key, result)
                if key.variant == "baseline":
                    baselines[key.workload] = result
                results[key] = result
            for key, result in results.items():
                row = rows[key]
                base = baselines.get(key.workload, {})
                problems = check(key, result)
                if "error" in base:
                    problems.append("baseline failed")
                if problems:
                    row.problems.extend(p for p in problems if p not in row.problems)
                    continue
                row.results.append(result)
                row.baselines.append(base)
    return rows


@contextmanager
def _no_endpoint() -> Iterator[None]:
    yield None


def _progress(prefix: str, key: Key, result: dict[str, Any]) -> None:
    what = f"{key.workload:8} {key.variant:13} {key.processor or '':6}"
    if "error" in result:
        line = f"ERROR {result['error'].strip().splitlines()[-1][:120]}"
    else:
        line = f"{result.get('cpu_us', 0):8.1f} us CPU/call"
    print(prefix + what + " " + line, file=sys.stderr, flush=True)


# -- statistics ---------------------------------------------------------------------------


@dataclass
class Stat:
    median: float
    low: float
    high: float


def overhead(row: Row, metric: str) -> Stat | None:
    diffs = [r[metric] - b[metric] for r, b in zip(row.results, row.baselines, strict=True)]
    if not diffs:
        return None
    return Stat(statistics.median(diffs), min(diffs), max(diffs))


def ratio_to_baseline(row: Row) -> float | None:
    ratios = [r["cpu_us"] / b["cpu_us"] for r, b in zip(row.results, row.baselines, strict=True)]
    return statistics.median(ratios) if ratios else None


def peer_of(rows: dict[Key, Row], key: Key) -> Row | None:
    return rows.get(Key(key.workload, "peer", key.processor or "simple"))


def ratio_to_peer(rows: dict[Key, Row], key: Key) -> float | None:
    peer = peer_of(rows, key)
    mine = overhead(rows[key], "cpu_us")
    theirs = overhead(peer, "cpu_us") if peer is not None else None
    if mine is None or theirs is None or theirs.median <= 0:
        return None
    return mine.median / theirs.median


# -- the report ------------------------------------------------------------------------------


def _versions() -> str:
    names = (
        "boto3",
        "botocore",
        "evobs",
        "opentelemetry-api",
        "opentelemetry-sdk",
        "opentelemetry-instrumentation-botocore",
        "prometheus-client",
        "structlog",
        "moto",
        "aws-xray-sdk",
    )
    out = []
    for name in names:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "evobs"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha + (" with local changes to evobs/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _fmt(value: float | None, spec: str = ".1f", none: str = "n/a") -> str:
    return none if value is None else format(value, spec)


def _stat(stat: Stat | None) -> str:
    if stat is None:
        return "n/a"
    return f"{stat.median:.1f} [{stat.low:.1f}, {stat.high:.1f}]"


def table(rows: dict[Key, Row], workload: str) -> list[str]:
    keys = [k for k in rows if k.workload == workload]
    base_row = rows.get(Key(workload, "baseline", None))
    lines = []
    if base_row is not None and base_row.results:
        cpu = statistics.median(r["cpu_us"] for r in base_row.results)
        wall = statistics.median(r["wall_us"] for r in base_row.results)
        rss = statistics.median(r["peak_rss_mb"] for r in base_row.results)
        lines.append(
            f"Baseline (boto3 alone): {cpu:.1f} µs CPU, {wall:.1f} µs wall per call, "
            f"peak RSS {rss:.1f} MB."
        )
        lines.append("")
    lines += [
        "| variant | span processor | CPU overhead µs/call, median [min, max] "
        "| wall overhead µs/call | CPU x baseline | overhead ÷ peer's "
        "| spans/call | calls in metrics/call | log events/call (per failing call) "
        "| peak RSS MB | valid |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in keys:
        if key.variant == "baseline":
            continue
        row = rows[key]
        last = row.results[-1] if row.results else {}
        logs = _fmt(last.get("logs_per_call"), ".2f", "")
        proof = last.get("logs_proof_per_call")
        if proof is not None:
            logs += f" ({proof:.2f})"
        rss = statistics.median(r["peak_rss_mb"] for r in row.results) if row.results else None
        valid = "yes" if not row.problems else "**no**: " + "; ".join(row.problems)
        lines.append(
            f"| {LABELS[key.variant]} | {key.processor or '-'} "
            f"| {_stat(overhead(row, 'cpu_us'))} "
            f"| {_fmt(o.median if (o := overhead(row, 'wall_us')) else None)} "
            f"| {_fmt(ratio_to_baseline(row), '.3f')} "
            f"| {_fmt(ratio_to_peer(rows, key), '.2f', '-')} "
            f"| {_fmt(last.get('spans_per_call'), '.2f', '-')} "
            f"| {_fmt(last.get('metric_calls_per_call'), '.2f', '-')} "
            f"| {logs or '-'} | {_fmt(rss)} | {valid} |"
        )
    return lines


def targets(rows: dict[Key, Row], processors: Sequence[str]) -> list[str]:
    lines = [
        "| target | span processor | evobs overhead µs | peer overhead µs | ratio | met "
        "| bare SDK start_span µs (same spans) | ÷ peer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for workload, variant, ceiling in TARGETS:
        for processor in processors:
            key = Key(workload, variant, processor)
            if key not in rows:
                continue
            mine = overhead(rows[key], "cpu_us")
            peer = peer_of(rows, key)
            theirs = overhead(peer, "cpu_us") if peer is not None else None
            ratio = ratio_to_peer(rows, key)
            valid = not rows[key].problems and peer is not None and not peer.problems
            met = "n/a" if ratio is None else ("yes" if ratio <= ceiling and valid else "**no**")
            floor_key = Key(workload, "floor", processor)
            floor = overhead(rows[floor_key], "cpu_us") if floor_key in rows else None
            floor_ratio = ratio_to_peer(rows, floor_key) if floor_key in rows else None
            lines.append(
                f"| {workload}: {LABELS[variant]} ≤ {ceiling:g} x peer | {processor} "
                f"| {_fmt(mine.median if mine else None)} "
                f"| {_fmt(theirs.median if theirs else None)} | {_fmt(ratio, '.2f')} | {met} "
                f"| {_fmt(floor.median if floor else None)} | {_fmt(floor_ratio, '.2f')} |"
            )
            if met == "**no**" and mine and theirs:
                notes.append(
                    f"- {workload}, {processor}: {mine.median:.1f} µs is over "
                    f"{ceiling:g} x peer ({ceiling * theirs.median:.1f} µs)."
                )
    if notes:
        lines += ["", *notes]
    return lines


def soak_lines(result: dict[str, Any] | None) -> list[str]:
    if result is None:
        return []
    if "error" in result:
        return [f"Soak failed: {result['error'].strip().splitlines()[-1][:300]}"]
    points = result["points"]
    first, last = points[0], points[-1]
    grew_rss = last["rss_mb"] - first["rss_mb"]
    grew_objects = last["gc_objects"] - first["gc_objects"]
    flat = grew_rss <= SOAK_RSS_MB and grew_objects <= SOAK_OBJECTS
    lines = [
        "| calls | RSS MB | gc-tracked objects |",
        "|---|---|---|",
        *(f"| {p['calls']:,} | {p['rss_mb']:.1f} | {p['gc_objects']:,} |" for p in points),
        "",
        f"Growth from {first['calls']:,} to {last['calls']:,} calls: {grew_rss:+.2f} MB RSS, "
        f"{grew_objects:+,} objects; spans exported {result.get('spans'):,}, calls in metrics "
        f"{_fmt(result.get('metric_calls'), ',.0f')}. Flat (≤ {SOAK_RSS_MB:g} MB and "
        f"≤ {SOAK_OBJECTS:,} objects): **{'yes' if flat else 'no'}**.",
    ]
    return lines


def micro_lines(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| span processor | start_span(10 attributes) + end | the same, made current "
        "(attach/detach) |",
        "|---|---|---|",
    ]
    for result in results:
        if "error" in result:
            lines.append(f"| {result['spec'].get('processor')} | error | error |")
            continue
        lines.append(
            f"| {result['spec'].get('processor')} | {result['span_us']:.1f} µs "
            f"| {result['span_current_us']:.1f} µs |"
        )
    return lines


def cold_lines(results: dict[str, list[float]]) -> list[str]:
    if not results:
        return []
    base = statistics.median(results["baseline"]) if results.get("baseline") else None
    lines = ["| setup | median ms | + ms over boto3 alone |", "|---|---|---|"]
    for variant, values in results.items():
        value = statistics.median(values)
        extra = "-" if base is None or variant == "baseline" else f"{value - base:+.0f}"
        lines.append(f"| {LABELS[variant]} | {value:.0f} | {extra} |")
    return lines


def cpu_lines(
    args: argparse.Namespace,
    rows: dict[Key, Row],
    soak: dict[str, Any] | None,
    micro: list[dict[str, Any]],
    cold: dict[str, list[float]],
) -> list[str]:
    """The CPU-time section: the second opinion beside the instruction counts."""
    out = [
        "## CPU time (second opinion)",
        "",
        f"{args.rounds} round(s); each round runs every variant once, each in a fresh "
        "process, in shuffled order, with its own uninstrumented baseline process. "
        "A child's number is its fastest batch (other processes only ever add time); "
        "a row shows the median over rounds of (variant minus that round's baseline) "
        "and the [min, max] over rounds. On this shared machine three runs of one commit "
        "gave ratios up to 0.1 apart: the targets are judged on instructions (above).",
        "",
        "How to read it:",
        "",
        "- **canned**: a `before-send` handler returns a prebuilt response (DynamoDB GetItem, "
        "S3 HeadObject, S3 ListObjectsV2 in turn): serialization, signing, parsing and "
        "every event run, no socket. **retry**: the same calls answered 503, 503, 200 "
        "(standard mode, three attempts, backoff jitter 0). **loopback**: the same calls "
        "to moto's server on 127.0.0.1 (the server runs in the parent process, so its CPU "
        "is not in these numbers; wall time includes it).",
        "- Spans go to a counting exporter (nothing serialised) for evobs, the peer "
        "(opentelemetry-instrumentation-botocore with an SDK TracerProvider) and the bare "
        "SDK start_span rows, "
        "through a SimpleSpanProcessor or a BatchSpanProcessor (its export thread's CPU "
        "counts: CPU time is the whole process's).",
        "- Every process has an ordinary application's logging: one root handler at "
        "WARNING that formats what reaches it.",
        "- *overhead ÷ peer's* divides by the peer's overhead with the same span processor "
        "(for metrics/logs only: SimpleSpanProcessor). *bare SDK start_span* is two "
        "botocore handlers that start one SDK span with ten attributes through "
        "`Tracer.start_span`, make it current and end it (and the attempt spans on retry): "
        "the least an instrumentation pays that creates its spans through the SDK's "
        "`start_span`, as the peer does. evobs records the same spans through the SDK's "
        "own parts without `start_span` "
        "([telemetry.md](telemetry.md#how-spans-reach-your-provider)).",
        "- With a BatchSpanProcessor every variant that emits spans costs more per call than "
        "with a SimpleSpanProcessor, and mostly outside the span code: while its export "
        "thread runs, botocore's own calls that release the GIL (`os.urandom` for the "
        "invocation id) were measured here at about 24 µs instead of 1 µs.",
        "- A row is valid only if the variant proved it emitted: spans per call, one "
        "observation per call in `aws_sdk_call_duration_seconds` (for the OpenTelemetry "
        "metrics signal in `client.call.duration`), and log events per "
        "failing call (S3 HeadObject 404, WARNING) after the timed part; for evobs also "
        "that its `before-send` ran before the canned responder's.",
        "",
        "### Targets (CPU time)",
        "",
        *targets(rows, args.processors),
        "",
    ]
    for workload in args.workloads:
        if any(k.workload == workload for k in rows):
            out += [f"### {workload} (CPU time)", "", *table(rows, workload), ""]
    if micro:
        out += [
            "### The OpenTelemetry SDK's start_span, outside a call",
            "",
            "Outside any AWS call, per span, CPU (a counting exporter):",
            "",
            *micro_lines(micro),
            "",
            "Inside a real call the same span costs more (the *bare SDK start_span* rows "
            "above): the caches are busy with botocore's own work.",
            "",
        ]
    if soak is not None:
        out += [
            "### Soak",
            "",
            "evobs traces+metrics+logs (SimpleSpanProcessor), canned workload, one process; "
            "memory after a full garbage collection at each checkpoint:",
            "",
            *soak_lines(soak),
            "",
        ]
    if cold:
        out += [
            "### Cold start (wall time)",
            "",
            "Whole process after interpreter start: import boto3 (and the OTel SDK), "
            "set up the instrumentation with an SDK TracerProvider, create the first S3 "
            "client; wall time, median over rounds:",
            "",
            *cold_lines(cold),
            "",
        ]
    return out


def report(args: argparse.Namespace, sections: list[str], elapsed: float) -> str:
    command = "python -m tests.benchmarks " + " ".join(args.argv)
    out = [
        "# Performance",
        "",
        f"Generated by `make bench` (`{command.strip()}`) on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {elapsed / 60:.1f} min; "
        "rewritten by every run, do not edit by hand.",
        "",
        f"- Machine: {os.cpu_count()} CPUs ({_cpu_model()}), {platform.system()} "
        f"{platform.release()}.",
        f"- Python {platform.python_version()}; {_versions()}; evobs at {_git()}.",
        "- Two measures: instructions executed (repeatable whatever else the machine "
        "does; the targets are judged on them) and CPU time (the second opinion).",
        "",
        *sections,
    ]
    return "\n".join(out).rstrip() + "\n"


# -- main --------------------------------------------------------------------------------------


def _csv(choices: Iterable[str]) -> Any:
    allowed = tuple(choices)

    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(allowed)}")
        return items

    return parse


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (smoke, development)")
    parser.add_argument("--only", choices=MODES, default=None, help="run one mode (default: both)")
    parser.add_argument("--rounds", type=int, default=None, help="CPU rounds (default 9; quick 1)")
    parser.add_argument(
        "--workloads",
        type=_csv(WORKLOADS),
        default=list(WORKLOADS),
        help="instructions count canned and retry of these; CPU times all of them",
    )
    parser.add_argument(
        "--variants",
        type=_csv(VARIANTS),
        default=None,
        help=f"default: instructions {','.join(instructions.VARIANTS)} (quick "
        f"{','.join(instructions.QUICK_VARIANTS)}); CPU {','.join(CPU_VARIANTS)}",
    )
    parser.add_argument("--processors", type=_csv(("simple", "batch")), default=["simple", "batch"])
    parser.add_argument(
        "--counter",
        choices=("auto", "perf", "callgrind"),
        default="auto",
        help="instruction counter (auto: perf where the kernel counts instructions, "
        "else callgrind)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="count every (N1, N2) pair this many times, the k-th at PYTHONHASHSEED=k "
        "and memory layout k (default: the rows targets are judged on "
        f"{instructions.TARGET_SEEDS} times, the others once; cold start as many times, "
        "at PYTHONHASHSEED=k)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=max(1, min(2, os.cpu_count() or 1)),
        help="counted processes run side by side (counts do not depend on it)",
    )
    parser.add_argument(
        "--cold-setups",
        type=_csv(instructions.COLD_VARIANTS),
        default=None,
        help=f"cold-start setups to count (default {','.join(instructions.COLD_VARIANTS)}; "
        f"quick {','.join(instructions.QUICK_COLD)})",
    )
    parser.add_argument("--no-soak", action="store_true")
    parser.add_argument("--no-extras", action="store_true", help="skip micro and cold start")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None, help="markdown file to write")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--json", type=Path, default=None, help="also dump raw results here")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.rounds is None:
        args.rounds = 1 if args.quick else 9
    if args.output is None and not args.quick and not args.no_write:
        args.output = DEFAULT_OUTPUT
    if args.no_write:
        args.output = None
    args.modes = (args.only,) if args.only else MODES
    requested = args.variants
    args.cpu_variants = [v for v in (requested or CPU_VARIANTS) if v in VARIANTS]
    ins_default = instructions.QUICK_VARIANTS if args.quick else instructions.VARIANTS
    args.ins_variants = [v for v in (requested or ins_default) if v in instructions.VARIANTS]
    if args.cold_setups is None:
        quick_cold = instructions.QUICK_COLD
        args.cold_setups = list(quick_cold if args.quick else instructions.COLD_VARIANTS)
    args.ins_workloads = [w for w in args.workloads if w in instructions.WORKLOADS]
    return args


def _progress_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_instructions(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """The instruction-count section and its raw data ({} and a note if no counter)."""
    counter = instructions.find_counter(args.counter)
    if counter is None:
        note = f"Instruction counts not run: no {args.counter} counter here (valgrind or perf)."
        _progress_line(note)
        return ["## Instructions", "", note, ""], {}
    cold_setups = [] if args.no_extras else args.cold_setups
    specs = [
        instructions.spec_for(instructions.Key(w, v), 3, 3)
        for w in args.ins_workloads
        for v in ("baseline", *args.ins_variants)
    ]
    instructions.prime(specs, cold_setups, args.jobs)
    rows = instructions.run_per_call(
        counter,
        args.ins_workloads,
        args.ins_variants,
        args.quick,
        args.repeat,
        args.jobs,
        _progress_line,
    )
    # Each cold start is one process, counted at several hash seeds (its goals are judged).
    if args.repeat is not None:
        cold_repeat = args.repeat
    else:
        cold_repeat = 1 if args.quick else instructions.TARGET_SEEDS
    cold = instructions.run_cold(counter, cold_setups, cold_repeat, args.jobs, _progress_line)
    lines = instructions.report_lines(
        counter, rows, cold, args.quick, args.repeat, args.ins_workloads
    )
    return lines, instructions.raw(rows, cold)


def run_cpu(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """The CPU-time section and its raw data."""
    args.variants = args.cpu_variants
    rows = run_all(args)
    micro: list[dict[str, Any]] = []
    cold: dict[str, list[float]] = {}
    if not args.no_extras:
        sizes = (3, 200) if args.quick else (7, 2000)
        for processor in args.processors:
            micro.append(
                run_child(
                    {
                        "mode": "micro",
                        "processor": processor,
                        "batches": sizes[0],
                        "batch_calls": sizes[1],
                    }
                )
            )
        for _ in range(args.rounds):
            for variant in ("baseline", "evobs-all", "peer"):
                result = run_child({"mode": "cold", "variant": variant})
                if "cold_ms" in result:
                    cold.setdefault(variant, []).append(result["cold_ms"])
    soak = None
    if not args.no_soak:
        checkpoints = SOAK[1 if args.quick else 0]
        soak = run_child(
            {
                "mode": "soak",
                "workload": "canned",
                "variant": "evobs-all",
                "processor": "simple",
                "checkpoints": list(checkpoints),
            },
            timeout=3600,
        )
    raw = {
        "rows": [
            {
                "key": vars(row.key),
                "results": row.results,
                "baselines": row.baselines,
                "problems": row.problems,
            }
            for row in rows.values()
        ],
        "soak": soak,
        "micro": micro,
        "cold": cold,
    }
    return cpu_lines(args, rows, soak, micro, cold), raw


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    sections: list[str] = []
    raw: dict[str, Any] = {}
    if "instructions" in args.modes:
        lines, raw["instructions"] = run_instructions(args)
        sections += lines
    if "cpu" in args.modes:
        lines, raw["cpu"] = run_cpu(args)
        sections += lines
    text = report(args, sections, time.monotonic() - started)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"\nwritten to {args.output}", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
