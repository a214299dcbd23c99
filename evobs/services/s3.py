"""S3: bucket, upload id, part number; the key and copy source only with ``capture_s3_keys``
(object keys can be personal data)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import ServiceSpec

if TYPE_CHECKING:
    from .._options import Options


def _request(name: str, params: dict[str, Any], options: Options, attrs: dict[str, Any]) -> None:
    bucket = params.get("Bucket")
    if isinstance(bucket, str):
        attrs["aws.s3.bucket"] = bucket
    upload_id = params.get("UploadId")
    if isinstance(upload_id, str):
        attrs["aws.s3.upload_id"] = upload_id
    part = params.get("PartNumber")
    if isinstance(part, int):
        attrs["aws.s3.part_number"] = part
    if options.capture_s3_keys:
        key = params.get("Key")
        if isinstance(key, str):
            attrs["aws.s3.key"] = key
        source = params.get("CopySource")
        if isinstance(source, str):
            attrs["aws.s3.copy_source"] = source
        elif isinstance(source, dict) and "Bucket" in source and "Key" in source:
            attrs["aws.s3.copy_source"] = f"{source['Bucket']}/{source['Key']}"


def _response(name: str, parsed: dict[str, Any], attrs: dict[str, Any]) -> None:
    upload_id = parsed.get("UploadId")
    if isinstance(upload_id, str):  # CreateMultipartUpload answers with it
        attrs["aws.s3.upload_id"] = upload_id


SPEC = ServiceSpec(request=_request, response=_response)
