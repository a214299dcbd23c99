"""The backend stack in exporters/: every file parses, the pieces point at each other
(ports, service names, mounted paths, datasource uids), every metric the alert rules
use is one evobs emits, and Debian's promtool accepts the config, the rules and the
rules' unit tests.

No Docker, Jaeger, Grafana or Collector binaries are available here (DESIGN 6), so
those files are checked structurally; Prometheus's own files go through promtool.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from prometheus_client import CollectorRegistry

import evobs

ROOT = Path(__file__).resolve().parent.parent
EXPORTERS = ROOT / "exporters"
DASHBOARDS = ROOT / "dashboards"
COMPOSE = EXPORTERS / "compose.yaml"
PROVISIONING = EXPORTERS / "grafana" / "provisioning"
PROMTOOL = os.environ.get("EVOBS_PROMTOOL_BINARY", "/usr/bin/promtool")

OTLP_PORTS = {4317, 4318}


def load(path: Path) -> Any:
    """Parse a YAML or JSON file of the stack."""
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def metric_catalog() -> dict[str, frozenset[str]]:
    """Every sample name evobs can emit, with its label names, read from a real
    registry after ``instrument()`` and a Bedrock Runtime client (the families are
    created there, once; the GenAI ones with the first such client)."""
    registry = CollectorRegistry()
    session = botocore.session.get_session()
    handle = evobs.instrument(session, registry=registry, signals=["metrics"])
    try:
        session.create_client(
            "bedrock-runtime",
            region_name="us-east-1",
            endpoint_url="http://127.0.0.1:1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        collectors = dict(registry._names_to_collectors)  # name -> collector, all samples
    finally:
        handle.uninstrument()
    catalog: dict[str, frozenset[str]] = {}
    for collector in set(collectors.values()):
        labels = frozenset(getattr(collector, "_labelnames", ()))
        for metric in collector.describe():
            suffixes = {
                "counter": ("_total",),
                "histogram": ("_bucket", "_count", "_sum"),
                "gauge": ("",),
            }[metric.type]
            for suffix in suffixes:
                extra = {"le"} if suffix == "_bucket" else set()
                catalog[metric.name + suffix] = labels | extra
    return catalog


#: Prometheus target labels and the ALERTS series: present on every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
_SELECTOR = re.compile(r"\b((?:aws_sdk|evobs|gen_ai)_[a-z_]+)\b(\{[^}]*\})?")
_MATCHER_NAME = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|ignoring|on)\s*\(([^)]*)\)")


def check_promql_names(expr: str, catalog: dict[str, frozenset[str]]) -> list[str]:
    """Problems with the metric and label names an expression uses (empty: none).

    Every ``aws_sdk_*``/``evobs_*``/``gen_ai_*`` name must be a sample evobs emits; every
    label in its matchers must be one of that metric's labels (or a target label); every
    grouping label must exist on at least one metric of the expression.
    """
    problems: list[str] = []
    names: set[str] = set()
    # Grouping clauses hold label names, some of which look like names (gen_ai_*).
    for name, matchers in _SELECTOR.findall(_GROUPING.sub(" ", expr)):
        if name not in catalog:
            problems.append(f"unknown metric {name}")
            continue
        names.add(name)
        for label in _MATCHER_NAME.findall(matchers or ""):
            if label not in catalog[name] | TARGET_LABELS:
                problems.append(f"{name} has no label {label!r}")
    known = TARGET_LABELS.union(*(catalog[n] for n in names)) if names else TARGET_LABELS
    for group in _GROUPING.findall(expr):
        for label in filter(None, (g.strip() for g in group.split(","))):
            if label not in known:
                problems.append(f"grouping by unknown label {label!r}")
    if not names:
        problems.append("uses no evobs metric")
    return problems


def require_promtool() -> str:
    """promtool's path; skip when it is missing, fail instead under EVOBS_REQUIRE_PROMETHEUS=1."""
    path = PROMTOOL if os.access(PROMTOOL, os.X_OK) else shutil.which("promtool")
    if path is None:
        reason = f"promtool is not installed ({PROMTOOL}; Debian package 'prometheus')"
        if os.environ.get("EVOBS_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(f"EVOBS_REQUIRE_PROMETHEUS=1 but {reason}")
        pytest.skip(reason)
    return path


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool in exporters/ (relative paths resolve as Prometheus would)."""
    return subprocess.run(
        [require_promtool(), *args],
        cwd=EXPORTERS,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def published_ports(service: dict[str, Any]) -> set[int]:
    """Host ports a compose service publishes (short and long syntax)."""
    out: set[int] = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            if "published" in entry:
                out.add(int(entry["published"]))
            continue
        parts = str(entry).split("/")[0].split(":")
        if len(parts) >= 2:  # HOST:CONTAINER or IP:HOST:CONTAINER
            out.add(int(parts[-2]))
    return out


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """``(host source, container target)`` of a service's relative bind mounts."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume.get("target", "")
        else:
            source, target = str(volume).split(":")[:2]
        if source.startswith("."):
            out.append((source, target))
    return out


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def catalog() -> dict[str, frozenset[str]]:
    return metric_catalog()


# -- every file -------------------------------------------------------------------------


def test_every_file_parses() -> None:
    """Every YAML and JSON file under exporters/ and dashboards/ parses to a mapping."""
    files = sorted(
        p
        for base in (EXPORTERS, DASHBOARDS)
        for p in base.rglob("*")
        if p.suffix in {".yml", ".yaml", ".json"}
    )
    assert len(files) >= 7, files
    for path in files:
        assert isinstance(load(path), dict), path


def test_readme_gives_three_commands() -> None:
    """exporters/README.md starts the stack, runs the demo against it, and names the UIs."""
    readme = (EXPORTERS / "README.md").read_text()
    assert "docker compose -f exporters/compose.yaml up" in readme
    assert (
        'make demo ARGS="--serve --otlp-endpoint http://localhost:4318 --metrics-addr 0.0.0.0"'
        in readme
    )
    for url in ("http://localhost:16686", "http://localhost:9090", "http://localhost:3000"):
        assert url in readme


def test_readme_demo_command_is_valid() -> None:
    """The demo arguments the README gives parse with the real CLI, and serve /metrics
    on the port Prometheus scrapes, on an address the Prometheus container can reach."""
    from evobs.cli import _parser

    readme = (EXPORTERS / "README.md").read_text()
    (args,) = re.findall(r'make demo ARGS="([^"]+)"\n', readme)
    parsed = _parser().parse_args(["demo", *args.split()])
    assert parsed.serve is True
    assert parsed.otlp_endpoint == "http://localhost:4318"
    assert parsed.metrics_addr == "0.0.0.0"
    target = load(EXPORTERS / "prometheus.yml")["scrape_configs"][0]["static_configs"][0]
    assert target["targets"] == [f"host.docker.internal:{parsed.metrics_port}"]


# -- Prometheus ---------------------------------------------------------------------------


def test_prometheus_scrapes_evobs_on_the_host() -> None:
    """The scrape config reaches the app on the host at :9464 every 15 s and loads the rules."""
    config = load(EXPORTERS / "prometheus.yml")
    assert config["global"]["scrape_interval"] == "15s"
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "evobs"]
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["host.docker.internal:9464"]
    assert config["rule_files"] == ["alerts.yml"]
    assert (EXPORTERS / "alerts.yml").is_file()


def test_alert_rules_cover_the_issue(catalog: dict[str, frozenset[str]]) -> None:
    """The rules alert on throttling, error ratio, retry amplification, client churn,
    handler errors, span drops and sustained Bedrock throttling, using only metrics and
    labels evobs emits."""
    rules = [r for g in load(EXPORTERS / "alerts.yml")["groups"] for r in g["rules"]]
    by_name = {r["alert"]: r for r in rules}
    expected_metrics = {
        "AwsThrottlingSurge": "aws_sdk_retries_total",
        "AwsCallErrorRatioHigh": "aws_sdk_call_duration_seconds_count",
        "AwsRetryAmplification": "aws_sdk_retries_total",
        "AwsClientChurn": "aws_sdk_clients_created_total",
        "EvobsHandlerErrors": "evobs_handler_errors_total",
        "EvobsSpansDropped": "evobs_spans_dropped_total",
        "BedrockThrottlingSustained": "aws_sdk_call_attempts_total",
    }
    for name, metric in expected_metrics.items():
        assert metric in by_name[name]["expr"], name
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
        assert check_promql_names(rule["expr"], catalog) == [], rule["alert"]


def test_promtool_checks_the_config_and_rules() -> None:
    """``promtool check config`` (which also checks the rule files it names) and
    ``promtool check rules`` accept the files."""
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_promtool_unit_tests_prove_each_alert_fires() -> None:
    """``promtool test rules`` passes, and its tests cover every alert in alerts.yml."""
    rules = [r["alert"] for g in load(EXPORTERS / "alerts.yml")["groups"] for r in g["rules"]]
    tests = load(EXPORTERS / "alerts_test.yml")
    firing = {
        case["alertname"]
        for group in tests["tests"]
        for case in group["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert firing == set(rules)
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The rule tests are not vacuous: a wrong expected value makes promtool fail."""
    text = (EXPORTERS / "alerts_test.yml").read_text()
    assert "50% of DynamoDB.PutItem" in text
    shutil.copy(EXPORTERS / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "alerts_test.yml").write_text(text.replace("50% of DynamoDB", "40% of DynamoDB"))
    result = subprocess.run(
        [require_promtool(), "test", "rules", "alerts_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "AwsThrottlingSurge" in result.stdout + result.stderr


# -- compose --------------------------------------------------------------------------------


def test_compose_starts_the_four_services(compose: dict[str, Any]) -> None:
    """Jaeger, the Collector, Prometheus and Grafana, each on a pinned image."""
    services = compose["services"]
    assert set(services) == {"jaeger", "otel-collector", "prometheus", "grafana"}
    for name, service in services.items():
        image = service["image"]
        assert ":" in image.rsplit("/", 1)[-1], f"{name}: pin a version"
        assert not image.endswith(":latest"), name
    assert "jaegertracing/jaeger:2." in services["jaeger"]["image"]


def test_only_the_collector_owns_the_otlp_ports(compose: dict[str, Any]) -> None:
    """Exactly one service publishes 4317 and 4318 on the host (the Collector), and the
    UIs are published: Jaeger 16686, Prometheus 9090, Grafana 3000."""
    services = compose["services"]
    owners = {p: [n for n, s in services.items() if p in published_ports(s)] for p in OTLP_PORTS}
    assert owners == {4317: ["otel-collector"], 4318: ["otel-collector"]}
    assert 16686 in published_ports(services["jaeger"])
    assert 9090 in published_ports(services["prometheus"])
    assert 3000 in published_ports(services["grafana"])
    every = [p for s in services.values() for p in published_ports(s)]
    assert len(every) == len(set(every)), "a host port is published twice"


def test_compose_mounts_exist(compose: dict[str, Any]) -> None:
    """Every relative bind mount names a file or directory that exists next to compose.yaml."""
    mounts = [m for s in compose["services"].values() for m in bind_mounts(s)]
    assert len(mounts) >= 5
    for source, _target in mounts:
        assert (COMPOSE.parent / source).exists(), source


def test_prometheus_service_runs_the_repo_config(compose: dict[str, Any]) -> None:
    """Prometheus gets prometheus.yml and the rules at the paths the config names, exemplar
    storage on, and a host.docker.internal mapping to reach the app on the host."""
    service = compose["services"]["prometheus"]
    command = service["command"]
    assert "--enable-feature=exemplar-storage" in command
    (config_flag,) = [c for c in command if c.startswith("--config.file=")]
    config_in_container = Path(config_flag.split("=", 1)[1])
    mounts = {target: source for source, target in bind_mounts(service)}
    assert Path(mounts[str(config_in_container)]).name == "prometheus.yml"
    for rule_file in load(EXPORTERS / "prometheus.yml")["rule_files"]:
        in_container = config_in_container.parent / rule_file
        assert str(in_container) in mounts, f"{rule_file} is not mounted at {in_container}"
        assert (COMPOSE.parent / mounts[str(in_container)]).resolve() == (
            EXPORTERS / rule_file
        ).resolve()
    assert "host.docker.internal:host-gateway" in service["extra_hosts"]


# -- the Collector ---------------------------------------------------------------------------


def test_collector_receives_otlp_and_exports_to_jaeger(compose: dict[str, Any]) -> None:
    """OTLP gRPC/HTTP in on all interfaces, batched, out over OTLP to the compose service
    ``jaeger`` (no legacy ``jaeger`` exporter), and every pipeline component is defined."""
    config = load(EXPORTERS / "otel-collector.yaml")
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    pipeline = config["service"]["pipelines"]["traces"]
    assert "batch" in pipeline["processors"]
    for kind in ("receivers", "processors", "exporters"):
        for component in pipeline[kind]:
            assert component in config[kind], f"{kind}: {component} is not defined"
    exporter_types = {name.split("/")[0] for name in config["exporters"]}
    assert "jaeger" not in exporter_types
    otlp = [v for k, v in config["exporters"].items() if k.split("/")[0] in {"otlp", "otlp_grpc"}]
    assert [e["endpoint"] for e in otlp] == ["jaeger:4317"]
    assert "jaeger" in compose["services"]
    service = compose["services"]["otel-collector"]
    (config_flag,) = service["command"]
    config_in_container = config_flag.split("=", 1)[1]
    mounts = {target: source for source, target in bind_mounts(service)}
    assert Path(mounts[config_in_container]).name == "otel-collector.yaml"


# -- Grafana ----------------------------------------------------------------------------------


def test_grafana_provisioning_is_mounted(compose: dict[str, Any]) -> None:
    """Grafana mounts the provisioning tree and ../dashboards where the provider looks."""
    service = compose["services"]["grafana"]
    mounts = {target: source for source, target in bind_mounts(service)}
    assert (COMPOSE.parent / mounts["/etc/grafana/provisioning"]).resolve() == PROVISIONING
    provider = load(PROVISIONING / "dashboards" / "dashboards.yaml")["providers"][0]
    dashboards_in_container = provider["options"]["path"]
    source = (COMPOSE.parent / mounts[dashboards_in_container]).resolve()
    assert source == DASHBOARDS.resolve()
    assert (source / "evobs.json").is_file()
    home = service["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_in_container}/evobs.json"


def test_grafana_datasources_link_exemplars_to_jaeger(compose: dict[str, Any]) -> None:
    """Prometheus and Jaeger datasources point at their compose services, and exemplars
    carrying ``trace_id`` (the label evobs puts on them) open the trace in Jaeger."""
    sources = {
        d["uid"]: d for d in load(PROVISIONING / "datasources" / "datasources.yaml")["datasources"]
    }
    prometheus, jaeger = sources["prometheus"], sources["jaeger"]
    assert prometheus["type"] == "prometheus" and jaeger["type"] == "jaeger"
    assert prometheus["url"] == "http://prometheus:9090"
    assert jaeger["url"] == "http://jaeger:16686"
    assert {"prometheus", "jaeger"} <= set(compose["services"])
    (link,) = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert link["name"] == "trace_id"
    assert sources[link["datasourceUid"]]["type"] == "jaeger"
    metrics_source = (ROOT / "evobs" / "signals" / "metrics.py").read_text()
    assert '"trace_id": format(' in metrics_source, "evobs's exemplar label changed"
