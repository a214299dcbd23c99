"""dashboards/evobs.json: its structure, and every panel query run for real.

The real part: a boto3 session instrumented with all signals into a fresh registry
makes S3, DynamoDB and SQS calls against moto through the fault server (throttling,
a 503, a connection reset, missing keys, a failed condition, a user signal that
raises), and Bedrock Runtime calls against the local Bedrock endpoint through a second
fault server (streams, a retried throttle, a call that fails throttled), while the
registry is served over HTTP and scraped by Debian's Prometheus binary. Every panel's
PromQL, with the dashboard variables substituted as Grafana would, goes through
Prometheus's HTTP API and must parse and return a finite value.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import evobs
from evobs.demo.faults import Fault, FaultServer
from evobs.signals.metrics import start_metrics_server
from tests.conftest import fast_config
from tests.faults_util import zero_backoff
from tests.prometheus_harness import Prometheus
from tests.test_exporters import EXPORTERS, PROVISIONING, check_promql_names, load, metric_catalog

DASHBOARD_PATH = Path(__file__).resolve().parent.parent / "dashboards" / "evobs.json"
DASHBOARD: dict[str, Any] = json.loads(DASHBOARD_PATH.read_text())
PANELS = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
VARIABLES = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
#: Grafana's built-in variables the queries may use.
BUILTINS = {"__rate_interval", "__interval", "__range"}
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$")

#: What Grafana substitutes with every variable at "All" (allValue ".*"), the job the
#: harness scrapes, and intervals for its 1 s scrapes.
SUBSTITUTIONS = {
    "job": "evobs",
    "service": ".*",
    "operation": ".*",
    "region": ".*",
    "__rate_interval": "2m",
    "__interval": "15s",
    "__range": "5m",
}


def substitute(expr: str, values: dict[str, str] = SUBSTITUTIONS) -> str:
    """Replace ``$var``, ``${var}``, ``${var:fmt}`` and ``[[var]]`` as Grafana does."""
    return _VAR.sub(lambda m: values[m.group(1) or m.group(2) or m.group(3)], expr)


def variables_in(text: str) -> set[str]:
    return {a or b or c for a, b, c in _VAR.findall(text)}


def variable_query(variable: dict[str, Any]) -> str:
    query = variable["query"]
    return str(query["query"] if isinstance(query, dict) else query)


def targets() -> list[tuple[str, str]]:
    """``(id, expr)`` of every panel target, for parametrization."""
    return [
        (f"{p['id']}:{p['title']}/{t['refId']}", t["expr"]) for p in PANELS for t in p["targets"]
    ]


def datasource_refs(node: Any) -> Iterator[dict[str, Any]]:
    """Every ``datasource`` object anywhere in the dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource" and isinstance(value, dict):
                yield value
            else:
                yield from datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasource_refs(item)


# -- structure ----------------------------------------------------------------------------


def test_dashboard_is_current_grafana_schema() -> None:
    """A current Grafana schema, a stable uid, and the job/service/operation/region
    variables as multi-select label_values queries with an All option."""
    assert DASHBOARD["schemaVersion"] >= 39
    assert DASHBOARD["uid"] == "evobs-aws-sdk"
    for name in ("job", "service", "operation", "region"):
        variable = VARIABLES[name]
        assert variable["type"] == "query"
        assert variable["includeAll"] and variable["multi"] and variable["allValue"] == ".*"
        match = _LABEL_VALUES.match(variable_query(variable))
        assert match and match.group(2) == name, variable_query(variable)
        assert variable["definition"] == variable_query(variable)


def test_panel_ids_are_unique_and_every_panel_has_targets() -> None:
    """Unique ids across rows and panels; every non-row panel has PromQL targets with
    unique refIds."""
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    assert len(PANELS) >= 15
    for panel in PANELS:
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_panels_do_not_overlap() -> None:
    """Every panel fits in Grafana's 24-column grid and no two panels overlap."""
    cells: dict[tuple[int, int], str] = {}
    for panel in DASHBOARD["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_datasource_references_resolve() -> None:
    """Every datasource reference is the ``$datasource`` variable (a Prometheus datasource
    variable whose default is the provisioned Prometheus), a provisioned uid, or
    Grafana's built-in annotation source."""
    provisioned = {
        d["uid"]: d["type"]
        for d in load(PROVISIONING / "datasources" / "datasources.yaml")["datasources"]
    }
    variable = VARIABLES["datasource"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    assert provisioned[variable["current"]["value"]] == "prometheus"
    refs = list(datasource_refs(DASHBOARD))
    assert len(refs) > len(PANELS)
    for ref in refs:
        uid = ref["uid"]
        if uid in ("${datasource}", "$datasource"):
            assert ref["type"] == "prometheus"
        elif ref["type"] == "grafana":
            assert uid == "-- Grafana --"
        else:
            assert provisioned.get(uid) == ref["type"], ref


def test_variables_used_in_queries_are_defined() -> None:
    """Every variable a target or a variable query uses is defined (or a Grafana
    built-in), and a variable query only uses variables defined before it."""
    used: set[str] = set()
    for _, expr in targets():
        used |= variables_in(expr)
    assert {"job", "service", "operation", "region", "__rate_interval"} <= used
    assert used <= set(VARIABLES) | BUILTINS
    seen: set[str] = set()
    for variable in DASHBOARD["templating"]["list"]:
        if variable["type"] == "query":
            assert variables_in(variable_query(variable)) <= seen, variable["name"]
        seen.add(variable["name"])


def test_queries_use_only_evobs_metrics_and_labels() -> None:
    """Metric and label names in every query (and every variable query) are ones evobs
    emits: the names of DESIGN section 4, read from a real registry."""
    catalog = metric_catalog()
    for target_id, expr in targets():
        assert check_promql_names(expr, catalog) == [], target_id
    for name in ("job", "service", "operation", "region"):
        match = _LABEL_VALUES.match(variable_query(VARIABLES[name]))
        assert match is not None
        selector, label = match.groups()
        assert check_promql_names(selector, catalog) == [], name
        metric = selector.split("{")[0]
        assert label in catalog[metric] | {"job"}, name


def test_dashboard_has_the_panels_an_sre_needs() -> None:
    """Call rate, errors by outcome, p50/p95/p99 with exemplars, attempts and retries,
    throttling, backoff, signing/serialization, in-flight, client churn, handler errors."""
    titles = {p["title"]: p for p in PANELS}
    for title in (
        "Call rate",
        "Error ratio by outcome",
        "Call latency p50 / p95 / p99",
        "Attempts per call",
        "Retries by reason",
        "Throttling",
        "Retry backoff",
        "Signing and serialization p95",
        "In-flight calls",
        "Client churn",
        "evobs handler errors and dropped spans",
    ):
        assert title in titles, title
    latency = titles["Call latency p50 / p95 / p99"]["targets"]
    assert [t["legendFormat"] for t in latency] == ["p50", "p95", "p99"]
    assert all(t.get("exemplar") is True for t in latency)
    assert all("aws_sdk_call_duration_seconds_bucket" in t["expr"] for t in latency)


def test_the_genai_row_has_what_a_bedrock_user_needs() -> None:
    """A GenAI row: tokens per second by model, p95 time to first chunk, the throttled
    share of Bedrock calls; each from the GenAI or the Bedrock Runtime series."""
    rows = [p for p in DASHBOARD["panels"] if p["type"] == "row"]
    assert rows[-1]["title"] == "GenAI (Bedrock Runtime)"
    titles = {p["title"]: p for p in PANELS}
    tokens = titles["Tokens per second by model"]["targets"]
    assert "gen_ai_client_token_usage_sum" in tokens[0]["expr"]
    assert "gen_ai_request_model" in tokens[0]["expr"]
    first_chunk = titles["Time to first chunk p95 by model"]["targets"][0]["expr"]
    assert "histogram_quantile(0.95" in first_chunk
    assert "gen_ai_client_operation_time_to_first_chunk_seconds_bucket" in first_chunk
    throttled = titles["Throttled share of Bedrock calls"]
    assert throttled["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert all('service="Bedrock Runtime"' in t["expr"] for t in throttled["targets"])


# -- the real thing: a workload scraped by Prometheus ----------------------------------------


class BrokenSignal:
    """A user signal that raises: evobs contains it and counts it in
    ``evobs_handler_errors_total{event="call_ended"}``."""

    def call_ended(self, call: Any) -> None:
        raise RuntimeError("broken on purpose")


class Stack:
    """The running workload's parts the tests read."""

    def __init__(self, prom: Prometheus, registry: CollectorRegistry, spans: InMemorySpanExporter):
        self.prom = prom
        self.registry = registry
        self.spans = spans


#: A Bedrock throttle as the fault server answers it: 429 ThrottlingException, rest-json.
BEDROCK_THROTTLE = Fault.error(429, "ThrottlingException", "Too many tokens").with_style("json")


def _bedrock(session: boto3.Session, fault: FaultServer) -> None:
    """Bedrock Runtime calls through the fault server in front of the local endpoint:
    a Converse retried after a throttle, streams read to the end (time to first chunk),
    an InvokeModel throttled on every attempt."""
    config = fast_config(mode="standard", total_max_attempts=3)
    bedrock = session.client("bedrock-runtime", endpoint_url=fault.url, config=config)
    model = "anthropic.claude-3-haiku-20240307-v1:0"
    messages = [{"role": "user", "content": [{"text": "Summarise order 42"}]}]
    fault.script(
        [BEDROCK_THROTTLE.on(path=r"/converse$"), *[BEDROCK_THROTTLE.on(path=r"/invoke$")] * 3]
    )
    bedrock.converse(modelId=model, messages=messages)
    list(bedrock.converse_stream(modelId="us.amazon.nova-lite-v1:0", messages=messages)["stream"])
    body = json.dumps({"prompt": "Describe order 42", "max_gen_len": 64}).encode()
    stream = bedrock.invoke_model_with_response_stream(
        modelId="meta.llama3-8b-instruct-v1:0", body=body
    )
    list(stream["body"])
    with pytest.raises(ClientError, match="ThrottlingException"):
        bedrock.invoke_model(modelId=model, body=body)
    assert fault.pending == [], "every scripted Bedrock fault was used"


def _workload(
    session: boto3.Session, fault: FaultServer, bedrock_fault: FaultServer, phase: int
) -> None:
    """One pass of S3, DynamoDB, SQS and Bedrock Runtime calls, with scripted faults and
    real errors.

    Clients and a resource are built per pass (so client churn has a rate)."""
    config = fast_config(mode="standard", total_max_attempts=3)
    s3 = session.client("s3", endpoint_url=fault.url, config=config)
    ddb = session.client("dynamodb", endpoint_url=fault.url, config=config)
    sqs = session.client("sqs", endpoint_url=fault.url, config=config)
    s3_resource = session.resource("s3", endpoint_url=fault.url, config=config)

    bucket = f"evobs-dashboard-{phase}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="report.csv", Body=b"a,b\n1,2\n")
    s3.get_object(Bucket=bucket, Key="report.csv")["Body"].read()
    s3.list_objects_v2(Bucket=bucket)
    with pytest.raises(ClientError, match="NoSuchKey"):
        s3.get_object(Bucket=bucket, Key="missing.csv")
    assert [o.key for o in s3_resource.Bucket(bucket).objects.all()] == ["report.csv"]

    table = f"evobs-dashboard-{phase}"
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    queue_url = sqs.create_queue(QueueName=f"evobs-dashboard-{phase}")["QueueUrl"]

    fault.script(
        [
            Fault.throttle().on("PutItem"),  # retried, then succeeds
            Fault.status(503).on("GetItem"),  # retried, then succeeds
            Fault.reset().on("Query"),  # connection error, retried
            *[Fault.throttle().on("SendMessage")] * 3,  # fails throttled after 3 attempts
        ]
    )
    ddb.put_item(TableName=table, Item={"pk": {"S": "order-1"}})
    ddb.get_item(TableName=table, Key={"pk": {"S": "order-1"}})
    ddb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "order-1"}},
    )
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        ddb.put_item(
            TableName=table,
            Item={"pk": {"S": "order-1"}},
            ConditionExpression="attribute_not_exists(pk)",
        )
    with pytest.raises(ClientError, match="Throttl"):
        sqs.send_message(QueueUrl=queue_url, MessageBody="first")
    sqs.send_message(QueueUrl=queue_url, MessageBody="second")
    messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)["Messages"]
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
    assert fault.pending == [], "every scripted fault was used"
    _bedrock(session, bedrock_fault)


def _calls(registry: CollectorRegistry) -> float:
    return sum(
        s.value
        for m in registry.collect()
        if m.name == "aws_sdk_call_duration_seconds"
        for s in m.samples
        if s.name == "aws_sdk_call_duration_seconds_count"
    )


@pytest.fixture(scope="module")
def stack(
    moto_url: str, _bedrock_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Prometheus scraping a registry that two passes of the workload filled, with a
    scrape between the passes so every rate() has an increase to show."""
    registry = CollectorRegistry()
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    handle = evobs.instrument(
        session,
        tracer_provider=provider,
        registry=registry,
        signals=["traces", "metrics", "logs", BrokenSignal()],
    )
    server = start_metrics_server(port=0, addr="127.0.0.1", registry=registry)
    workdir = tmp_path_factory.mktemp("prometheus")
    try:
        with (
            pytest.MonkeyPatch.context() as monkeypatch,
            FaultServer(upstream=moto_url) as fault,
            FaultServer(upstream=_bedrock_server.url) as bedrock_fault,
            Prometheus(
                [f"127.0.0.1:{server.port}"], workdir, rule_files=[EXPORTERS / "alerts.yml"]
            ) as prom,
        ):
            zero_backoff(monkeypatch)
            prom.wait_for_scrape()
            for phase in (1, 2):
                _workload(session, fault, bedrock_fault, phase)
                calls = _calls(registry)
                prom.wait_for(
                    'sum(aws_sdk_call_duration_seconds_count{job="evobs"})',
                    lambda v, calls=calls: v >= calls,
                )
            yield Stack(prom, registry, spans)
    finally:
        server.shutdown()
        handle.uninstrument()
        provider.shutdown()


@pytest.mark.prometheus
@pytest.mark.parametrize(("target_id", "expr"), targets(), ids=[t for t, _ in targets()])
def test_every_panel_query_returns_data(stack: Stack, target_id: str, expr: str) -> None:
    """The panel's PromQL, variables substituted, parses in Prometheus and returns at
    least one series with a finite value."""
    query = substitute(expr)
    assert "$" not in query and "[[" not in query, query
    result = stack.prom.query(query)
    assert result, f"{target_id}: no data for {query}"
    values = [item["value"] for item in result]
    assert any(math.isfinite(v) for v in values), f"{target_id}: {query} -> {result}"


@pytest.mark.prometheus
def test_variable_queries_list_the_workload(stack: Stack) -> None:
    """The job/service/operation/region variables, run as Grafana runs label_values
    (the series API with a match[]), list what the workload called."""
    expected = {
        "job": {"evobs"},
        "service": {"S3", "DynamoDB", "SQS"},
        "operation": {"PutObject", "GetObject", "PutItem", "Query", "SendMessage"},
        "region": {"us-east-1"},
    }
    for name, wanted in expected.items():
        match = _LABEL_VALUES.match(variable_query(VARIABLES[name]))
        assert match is not None
        selector, label = match.groups()
        values = stack.prom.api(f"label/{label}/values", **{"match[]": substitute(selector)})
        assert wanted <= set(values), (name, values)


@pytest.mark.prometheus
def test_a_selected_operation_narrows_the_panels(stack: Stack) -> None:
    """With service=DynamoDB and operation=PutItem selected, the call-rate query returns
    exactly that series: the variables really filter."""
    (call_rate,) = [p for p in PANELS if p["title"] == "Call rate"]
    values = dict(SUBSTITUTIONS, service="DynamoDB", operation="PutItem", region="us-east-1")
    result = stack.prom.query(substitute(call_rate["targets"][0]["expr"], values))
    assert [r["metric"] for r in result] == [{"service": "DynamoDB", "operation": "PutItem"}]
    assert result[0]["value"] > 0


@pytest.mark.prometheus
def test_retries_and_throttling_show_what_the_fault_server_did(stack: Stack) -> None:
    """The retry reasons Prometheus holds are the faults that were injected, with the
    counts the fault server scripted (two passes)."""
    result = stack.prom.query('sum by (reason) (aws_sdk_retries_total{job="evobs"})')
    by_reason = {r["metric"]["reason"]: r["value"] for r in result}
    # per pass: PutItem throttled once + SendMessage throttled twice before its last
    # attempt + Bedrock's Converse once + InvokeModel twice before its last attempt
    assert by_reason == {"throttled": 12.0, "server_error": 2.0, "connection_error": 2.0}
    failed = stack.prom.query(
        'sum by (service, operation) (aws_sdk_call_duration_seconds_count{outcome="throttled"})'
    )
    assert sorted(failed, key=lambda r: r["metric"]["service"]) == [
        {"metric": {"service": "Bedrock Runtime", "operation": "InvokeModel"}, "value": 2.0},
        {"metric": {"service": "SQS", "operation": "SendMessage"}, "value": 2.0},
    ]


@pytest.mark.prometheus
def test_the_genai_row_shows_what_the_workload_did(stack: Stack) -> None:
    """The GenAI row on the real Prometheus says what the Bedrock calls did: a throttled
    share between 0 and 1 from the throttles the fault server injected (4 of 7 attempts
    per pass, one of four calls failed), a first-chunk time for the two streams' models,
    and tokens for the three models that answered."""
    throttled = stack.prom.query(
        'sum(aws_sdk_retries_total{job="evobs", service="Bedrock Runtime", reason="throttled"})'
        ' + sum(aws_sdk_call_duration_seconds_count{job="evobs", service="Bedrock Runtime",'
        ' outcome="throttled"})'
    )
    attempts = stack.prom.query(
        'sum(aws_sdk_call_attempts_total{job="evobs", service="Bedrock Runtime"})'
    )
    assert [r["value"] for r in throttled] == [8.0] and [r["value"] for r in attempts] == [14.0]
    (share,) = [p for p in PANELS if p["title"] == "Throttled share of Bedrock calls"]
    for target in share["targets"]:
        values = [r["value"] for r in stack.prom.query(substitute(target["expr"]))]
        assert len(values) == 1 and 0 < values[0] <= 1, (target["refId"], values)
    (first_chunk,) = [p for p in PANELS if p["title"] == "Time to first chunk p95 by model"]
    models = {
        r["metric"]["gen_ai_request_model"]
        for r in stack.prom.query(substitute(first_chunk["targets"][0]["expr"]))
    }
    assert models == {"us.amazon.nova-lite-v1:0", "meta.llama3-8b-instruct-v1:0"}
    tokens = stack.prom.query(
        'sum by (gen_ai_request_model) (gen_ai_client_token_usage_count{job="evobs"})'
    )
    assert {r["metric"]["gen_ai_request_model"] for r in tokens} == {
        "anthropic.claude-3-haiku-20240307-v1:0",
        "us.amazon.nova-lite-v1:0",
        "meta.llama3-8b-instruct-v1:0",
    }


@pytest.mark.prometheus
def test_exemplars_carry_the_calls_trace_ids(stack: Stack) -> None:
    """Prometheus (with exemplar storage, as in compose.yaml) stores exemplars on the
    latency histogram whose ``trace_id`` is a trace the workload really exported: what
    the Grafana exemplar link opens in Jaeger."""
    data = stack.prom.query_exemplars('aws_sdk_call_duration_seconds_bucket{job="evobs"}')
    trace_ids = {
        exemplar["labels"]["trace_id"] for series in data for exemplar in series["exemplars"]
    }
    assert trace_ids
    exported = {format(s.context.trace_id, "032x") for s in stack.spans.get_finished_spans()}
    assert trace_ids <= exported


@pytest.mark.prometheus
def test_alert_rules_evaluate_and_handler_errors_fire(stack: Stack) -> None:
    """exporters/alerts.yml loads into the real Prometheus, every rule evaluates without
    error on the workload's series, and EvobsHandlerErrors fires for the broken signal."""
    stack.prom.wait_for(
        'ALERTS{alertname="EvobsHandlerErrors", alertstate="firing", event="call_ended"}',
        lambda v: v == 1,
    )
    groups = stack.prom.api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == 9
    assert {r["health"] for r in rules} == {"ok"}, [(r["name"], r.get("lastError")) for r in rules]
