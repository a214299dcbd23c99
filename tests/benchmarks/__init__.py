"""``make bench``: the per-call cost of evobs against plain boto3 and against
opentelemetry-instrumentation-botocore.

Every variant runs in a fresh process (``tests.benchmarks.child``), paired with
an uninstrumented baseline process in the same round; the parent
(``python -m tests.benchmarks``) repeats the rounds, reports medians and spread,
and writes ``docs/performance.md``. Benchmarks report; nothing here asserts on time.
"""
