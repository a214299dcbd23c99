"""DynamoDB: table names, index, read options, consumed capacity, counts.

Never item contents: keys and attribute values are the user's data, so
``ItemCollectionMetrics`` (which holds key values) is not recorded.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from . import ServiceSpec, _semconv

if TYPE_CHECKING:
    from .._options import Options

# param -> attribute, copied when present with a scalar value.
_SCALARS = {
    "IndexName": "aws.dynamodb.index_name",
    "Limit": "aws.dynamodb.limit",
    "ConsistentRead": "aws.dynamodb.consistent_read",
    "ProjectionExpression": "aws.dynamodb.projection",
    "Select": "aws.dynamodb.select",
    "Segment": "aws.dynamodb.segment",
    "TotalSegments": "aws.dynamodb.total_segments",
    "ScanIndexForward": "aws.dynamodb.scan_forward",
    "ExclusiveStartTableName": "aws.dynamodb.exclusive_start_table",
}


def _static(name: str) -> dict[str, Any]:
    return _semconv.database(name)


def _tables(params: dict[str, Any]) -> list[str]:
    table = params.get("TableName")
    if isinstance(table, str):
        return [table]
    items = params.get("RequestItems")  # BatchGetItem / BatchWriteItem
    if isinstance(items, dict):
        return sorted(str(t) for t in items)
    transact = params.get("TransactItems")  # TransactGetItems / TransactWriteItems
    if isinstance(transact, list):
        names: set[str] = set()
        for item in transact:
            if isinstance(item, dict):
                for action in item.values():
                    if isinstance(action, dict) and isinstance(action.get("TableName"), str):
                        names.add(action["TableName"])
        return sorted(names)
    return []


def _request(name: str, params: dict[str, Any], options: Options, attrs: dict[str, Any]) -> None:
    tables = _tables(params)
    if tables:
        attrs["aws.dynamodb.table_names"] = tuple(tables)  # immutable, as the SDK stores it
        if len(tables) == 1 and _semconv.DATABASE != _semconv.OLD:
            attrs["db.collection.name"] = tables[0]
    for param in _SCALARS.keys() & params.keys():  # usually none or one: no scan of all nine
        value = params[param]
        if isinstance(value, str | int | bool):
            attrs[_SCALARS[param]] = value
    to_get = params.get("AttributesToGet")
    if isinstance(to_get, list):
        attrs["aws.dynamodb.attributes_to_get"] = tuple(str(a) for a in to_get)


def _response(name: str, parsed: dict[str, Any], attrs: dict[str, Any]) -> None:
    capacity = parsed.get("ConsumedCapacity")
    if isinstance(capacity, dict):
        capacity = [capacity]
    if isinstance(capacity, list) and capacity:
        attrs["aws.dynamodb.consumed_capacity"] = tuple(
            json.dumps(c, sort_keys=True, default=str) for c in capacity
        )
    for field, attribute in (
        ("Count", "aws.dynamodb.count"),
        ("ScannedCount", "aws.dynamodb.scanned_count"),
    ):
        value = parsed.get(field)
        if isinstance(value, int):
            attrs[attribute] = value
    tables = parsed.get("TableNames")  # ListTables
    if isinstance(tables, list):
        attrs["aws.dynamodb.table_count"] = len(tables)


SPEC = ServiceSpec(static=_static, request=_request, response=_response)
