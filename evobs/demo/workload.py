"""The demo workload: what a small order-processing service does against AWS.

Three workers (one per service) run until a deadline or a stop event:

- S3: puts order documents, reads them back, lists, heads, deletes old ones,
  asks for a few keys that do not exist (``NoSuchKey``), and uploads a 12 MiB
  file with ``upload_file`` and a small multipart threshold (3 parts);
- DynamoDB: puts, gets (through the boto3 resource too), queries per customer,
  updates a counter, and a conditional put on an existing key
  (``ConditionalCheckFailedException``, declared an expected error);
- SQS: sends (single and batch), receives and deletes.

A :class:`Chaos` object scripts the :class:`~evobs.demo.faults.FaultServer` in
front of the endpoint, so throttling and 5xx answers are real HTTP responses
that botocore really retries, with its real backoff. Reused by the dashboards
test, which needs every panel to have data.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .faults import FaultServer

__all__ = [
    "BUCKET",
    "EXPECTED_ERRORS",
    "QUEUE",
    "SERVICES",
    "TABLE",
    "Chaos",
    "Workload",
    "client_config",
    "demo_endpoint",
    "demo_session",
]

BUCKET: Final = "evobs-demo-orders"
TABLE: Final = "evobs-demo-orders"
QUEUE: Final = "evobs-demo-events"
SERVICES: Final = ("S3", "DynamoDB", "SQS")
#: Declared to ``instrument()``: a failed conditional write is control flow, not an incident.
EXPECTED_ERRORS: Final = {"DynamoDB.PutItem": {"ConditionalCheckFailedException"}}

_MIB: Final = 1024 * 1024
#: S3's minimum part size (moto enforces it), so 12 MiB makes three parts.
_PART_SIZE: Final = 5 * _MIB
_UPLOAD_SIZE: Final = 12 * _MIB
_CUSTOMERS: Final = 40


def demo_session() -> Any:
    """A boto3 session with fixed fake credentials: the demo never reads the user's own."""
    import boto3

    return boto3.Session(
        aws_access_key_id="evobs-demo",
        aws_secret_access_key="evobs-demo-secret",
        region_name="us-east-1",
    )


def client_config(max_attempts: int = 3) -> Any:
    """Standard retry mode with few attempts: real backoff, cheap retries."""
    from botocore.config import Config

    return Config(
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        s3={"addressing_style": "path"},
        connect_timeout=2,
        read_timeout=10,
        max_pool_connections=16,
    )


@contextlib.contextmanager
def demo_endpoint() -> Iterator[tuple[str, FaultServer]]:
    """moto's server on a free loopback port with a FaultServer in front of it.

    Yields ``(moto_url, fault_server)``; clients use ``fault_server.url``.
    """
    from .aws import start_moto_server
    from .faults import FaultServer

    moto, moto_url = start_moto_server()
    faults = FaultServer(upstream=moto_url).start()
    try:
        yield moto_url, faults
    finally:
        faults.stop()
        moto.stop()


class Chaos:
    """Scripts faults into the fault server just before some calls, at fixed rates.

    One throttle costs one retry; a surge (as many throttles as attempts) makes the
    call fail throttled; a 5xx costs one retry. Seeded, so runs are comparable.
    """

    __slots__ = ("_lock", "_rng", "injected", "rates", "server")

    def __init__(
        self,
        server: FaultServer | None,
        *,
        seed: int = 7,
        throttle: float = 0.03,
        surge: float = 0.0015,
        server_error: float = 0.012,
        attempts: int = 3,
    ) -> None:
        self.server = server
        self.rates = (throttle, surge, server_error, attempts)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        #: Faults scripted so far, by kind.
        self.injected: dict[str, int] = {"throttle": 0, "surge": 0, "server_error": 0}

    def before(
        self, operation: str | None = None, *, method: str | None = None, path: str | None = None
    ) -> None:
        """Maybe script a fault for the next request matching operation/method/path."""
        server = self.server
        if server is None:
            return
        from .faults import Fault

        throttle, surge, server_error, attempts = self.rates
        with self._lock:
            roll = self._rng.random()
            status = self._rng.choice((500, 503))
        if roll < surge:
            kind, faults = "surge", [Fault.throttle()] * attempts
        elif roll < surge + throttle:
            kind, faults = "throttle", [Fault.throttle()]
        elif roll < surge + throttle + server_error:
            kind, faults = "server_error", [Fault.status(status)]
        else:
            return
        server.script(f.on(operation, method=method, path=path) for f in faults)
        with self._lock:
            self.injected[kind] += 1


class _Tally:
    """Per-service step counters the workers bump (read by the progress display)."""

    __slots__ = ("_lock", "errors", "failures", "steps")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.steps = dict.fromkeys(SERVICES, 0)
        self.errors = dict.fromkeys(SERVICES, 0)
        #: Unexpected exceptions (not AWS errors), by type: a bug in the demo if any.
        self.failures: dict[str, int] = {}

    def step(self, service: str) -> None:
        with self._lock:
            self.steps[service] += 1

    def error(self, service: str) -> None:
        with self._lock:
            self.errors[service] += 1

    def failure(self, exc: BaseException) -> None:
        with self._lock:
            name = type(exc).__name__
            self.failures[name] = self.failures.get(name, 0) + 1


class Workload:
    """The mixed S3 / DynamoDB / SQS workload against ``endpoint_url``.

    ``setup()`` creates the bucket, table and queue; ``run()`` runs one worker
    thread per service until ``duration`` seconds pass or ``stop`` is set.
    """

    def __init__(
        self,
        session: Any,
        endpoint_url: str,
        *,
        faults: FaultServer | None = None,
        seed: int = 7,
        think: float = 0.0,
        multipart: bool = True,
        max_attempts: int = 3,
    ) -> None:
        self.session = session
        self.endpoint_url = endpoint_url
        self.chaos = Chaos(faults, seed=seed, attempts=max_attempts)
        self.think = think
        self.multipart = multipart
        self.tally = _Tally()
        self._config = client_config(max_attempts)
        self._seed = seed
        self._s3: Any = None
        self._dynamodb: Any = None
        self._sqs: Any = None
        self._queue_url = ""

    def client(self, service: str) -> Any:
        """A new client for ``service`` on the demo endpoint."""
        return self.session.client(service, endpoint_url=self.endpoint_url, config=self._config)

    # -- setup ----------------------------------------------------------------------------

    def setup(self) -> None:
        """Create the bucket, the table and the queue (idempotent)."""
        from botocore.exceptions import ClientError

        self._s3 = self.client("s3")
        self._dynamodb = self.client("dynamodb")
        self._sqs = self.client("sqs")
        with contextlib.suppress(ClientError):
            self._s3.create_bucket(Bucket=BUCKET)
        try:
            self._dynamodb.create_table(
                TableName=TABLE,
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise
        self._queue_url = self._sqs.create_queue(QueueName=QUEUE)["QueueUrl"]

    # -- running ----------------------------------------------------------------------------

    def run(self, duration: float | None, stop: threading.Event | None = None) -> None:
        """Run the three workers until ``duration`` seconds pass (None: until ``stop``)."""
        if self._s3 is None:
            self.setup()
        stop = stop or threading.Event()
        deadline = None if duration is None else time.monotonic() + duration

        def done() -> bool:
            return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

        workers = [
            threading.Thread(target=self._loop, args=(name, body, done), name=f"evobs-demo-{name}")
            for name, body in (
                ("S3", self._s3_step),
                ("DynamoDB", self._dynamodb_step),
                ("SQS", self._sqs_step),
            )
        ]
        for worker in workers:
            worker.daemon = True
            worker.start()
        try:
            for worker in workers:
                while worker.is_alive():
                    worker.join(timeout=0.2)
        except BaseException:
            stop.set()
            raise

    def _loop(self, service: str, body: Callable[[int], None], done: Callable[[], bool]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        i = 0
        while not done():
            try:
                body(i)
            except (ClientError, BotoCoreError):
                self.tally.error(service)
            except Exception as exc:  # the demo keeps going; the summary reports it
                self.tally.failure(exc)
            self.tally.step(service)
            i += 1
            if self.think:
                time.sleep(self.think)

    # -- S3 -----------------------------------------------------------------------------------

    def _s3_step(self, i: int) -> None:
        from botocore.exceptions import ClientError

        s3 = self._s3
        if i % 60 == 59:
            # Client churn, as a handler that builds a client per request would.
            s3 = self._s3 = self.client("s3")
        if self.multipart and i == 3:
            self._upload_file(s3)
        key = f"orders/{i:06d}.json"
        document = json.dumps({"order": i, "items": list(range(i % 17)), "note": "x" * (i % 900)})
        self.chaos.before(method="PUT", path=rf"^/{BUCKET}/orders/")
        s3.put_object(
            Bucket=BUCKET, Key=key, Body=document.encode(), ContentType="application/json"
        )
        self.chaos.before(method="GET", path=rf"^/{BUCKET}/orders/")
        s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        if i % 5 == 0:
            s3.list_objects_v2(Bucket=BUCKET, Prefix="orders/", MaxKeys=50)
        if i % 7 == 0:
            s3.head_object(Bucket=BUCKET, Key=key)
        if i % 25 == 24:
            s3.delete_object(Bucket=BUCKET, Key=f"orders/{i - 20:06d}.json")
        if i % 10 == 2:
            try:
                s3.get_object(Bucket=BUCKET, Key=f"orders/missing-{i:06d}.json")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NoSuchKey":
                    raise
                self.tally.error("S3")

    def _upload_file(self, s3: Any) -> None:
        from boto3.s3.transfer import TransferConfig

        transfer = TransferConfig(
            multipart_threshold=_PART_SIZE, multipart_chunksize=_PART_SIZE, max_concurrency=2
        )
        fd, path = tempfile.mkstemp(prefix="evobs-demo-", suffix=".bin")
        try:
            with os.fdopen(fd, "wb") as handle:
                block = random.Random(self._seed).randbytes(_MIB)
                for _ in range(_UPLOAD_SIZE // _MIB):
                    handle.write(block)
            # One part is throttled: a retried UploadPart inside the transfer.
            if self.chaos.server is not None:
                self.chaos.server.script(
                    [_s3_throttle().on(method="PUT", path=rf"^/{BUCKET}/uploads/")]
                )
            s3.upload_file(path, BUCKET, "uploads/archive.bin", Config=transfer)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    # -- DynamoDB -----------------------------------------------------------------------------

    def _dynamodb_step(self, i: int) -> None:
        from botocore.exceptions import ClientError

        db = self._dynamodb
        customer = f"customer#{i % _CUSTOMERS:03d}"
        sort_key = f"order#{i:06d}"
        self.chaos.before("PutItem")
        db.put_item(
            TableName=TABLE,
            Item={
                "pk": {"S": customer},
                "sk": {"S": sort_key},
                "total": {"N": str(10 + i % 90)},
                "status": {"S": "NEW"},
            },
        )
        self.chaos.before("GetItem")
        db.get_item(TableName=TABLE, Key={"pk": {"S": customer}, "sk": {"S": sort_key}})
        if i % 3 == 0:
            self.chaos.before("Query")
            db.query(
                TableName=TABLE,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": customer}},
                Limit=20,
            )
        if i % 6 == 0:
            db.update_item(
                TableName=TABLE,
                Key={"pk": {"S": customer}, "sk": {"S": sort_key}},
                UpdateExpression="SET #s = :s ADD revisions :one",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":s": {"S": "PAID"}, ":one": {"N": "1"}},
            )
        if i % 8 == 1:
            try:
                db.put_item(
                    TableName=TABLE,
                    Item={"pk": {"S": customer}, "sk": {"S": sort_key}},
                    ConditionExpression="attribute_not_exists(pk)",
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code != "ConditionalCheckFailedException":
                    raise
        if i % 20 == 10:
            # The resource API too (aws_sdk_resources_created_total).
            table = self.session.resource(
                "dynamodb", endpoint_url=self.endpoint_url, config=self._config
            ).Table(TABLE)
            table.get_item(Key={"pk": customer, "sk": sort_key})

    # -- SQS ----------------------------------------------------------------------------------

    def _sqs_step(self, i: int) -> None:
        sqs = self._sqs
        url = self._queue_url
        if i % 4 == 0:
            self.chaos.before("SendMessageBatch")
            sqs.send_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(n), "MessageBody": json.dumps({"order": i, "line": n})}
                    for n in range(5)
                ],
            )
        else:
            self.chaos.before("SendMessage")
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"order": i}))
        self.chaos.before("ReceiveMessage")
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = received.get("Messages", [])
        if len(messages) > 1:
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(messages)
                ],
            )
        elif messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
        if i % 20 == 0:
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])


def _s3_throttle() -> Any:
    from .faults import Fault

    return Fault.throttle()
