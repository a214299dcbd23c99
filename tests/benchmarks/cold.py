"""Cold start of one setup, the whole process: ``python tests/benchmarks/cold.py VARIANT``.

Run as a file (not ``-m``) so the process imports nothing but the setup itself:
import boto3, create an SDK TracerProvider, instrument the session, create an S3
client. The last line lists the modules loaded (the parent diffs them per setup).
"""

from __future__ import annotations

import sys

MODULES_PREFIX = "COLD-MODULES "
#: Setups: boto3 alone, + an SDK TracerProvider (no instrumentation), the peer, evobs.
VARIANTS = ("baseline", "sdk", "peer", "evobs-traces", "evobs-all")
_SIGNALS = {"evobs-traces": ("traces",), "evobs-all": ("traces", "metrics", "logs")}


def main(variant: str) -> None:
    if variant not in VARIANTS:
        raise SystemExit(f"unknown setup {variant!r}; choose from {', '.join(VARIANTS)}")
    import boto3

    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    if variant != "baseline":
        from opentelemetry.sdk.trace import TracerProvider

        provider = TracerProvider()
        if variant == "peer":
            from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

            BotocoreInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
        elif variant in _SIGNALS:
            import evobs

            evobs.instrument(session, tracer_provider=provider, signals=_SIGNALS[variant])
    session.client("s3", endpoint_url="http://127.0.0.1:1")
    sys.stdout.write(MODULES_PREFIX + " ".join(sorted(sys.modules)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
