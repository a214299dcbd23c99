"""Every read of another library's private details, one module per library.

evobs reads a few internals of the OpenTelemetry SDK (``otel_sdk``), the
OpenTelemetry API (``otel_api``), prometheus_client (``prometheus``) and
botocore/boto3 (``botocore``) where no public way exists. Each read lives here,
named, with a fallback that loses nothing, and a test in ``tests/test_compat.py``
that names the attribute: an upgrade that renames one fails that test, not a user's
telemetry.
"""
