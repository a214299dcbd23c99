"""What ``aws_sdk_resources_created_total`` counts, as docs/metrics.md says: boto3 resource
*classes* built (one ``creating-resource-class`` event each), not resource objects."""

from __future__ import annotations

import boto3
from prometheus_client import CollectorRegistry

import evobs


def _count(registry: CollectorRegistry, resource: str) -> float:
    value = registry.get_sample_value(
        "aws_sdk_resources_created_total", {"service": "S3", "resource": resource}
    )
    return value or 0.0


def test_classes_are_counted_per_constructor_response_and_page_not_per_object(
    moto_url: str,
) -> None:
    """session.resource(), each sub-resource made, each resource-returning response and each
    collection page count one; the objects in a page and a load() count nothing."""
    registry = CollectorRegistry()
    session = boto3.Session(region_name="us-east-1")
    handle = evobs.instrument(session, registry=registry)
    try:
        s3 = session.resource("s3", endpoint_url=moto_url)
        assert _count(registry, "ServiceResource") == 1
        bucket = s3.create_bucket(Bucket="evobs-resource-count")  # a response: one Bucket
        assert _count(registry, "Bucket") == 1
        s3.Bucket("evobs-resource-count")  # a sub-resource: one more
        assert _count(registry, "Bucket") == 2
        for i in range(5):
            bucket.put_object(Key=f"k{i}", Body=b"x")  # each response builds an Object class
        assert _count(registry, "Object") == 5
        obj = s3.Object("evobs-resource-count", "k0")
        obj.load()  # no resource returned: nothing built
        assert _count(registry, "Object") == 6

        assert len(list(bucket.objects.all())) == 5  # five objects, one page
        assert _count(registry, "ObjectSummary") == 1
        assert len(list(bucket.objects.page_size(2))) == 5  # the same five in three pages
        assert _count(registry, "ObjectSummary") == 4
    finally:
        handle.uninstrument()
