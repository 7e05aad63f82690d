"""The sandbox's S3 server (MinIO) from tests, as a boto3 client."""

from __future__ import annotations


def client_putting_back_buckets(sandbox):
    """A generator for a module fixture: a client of the sandbox's S3 server,
    and afterwards the buckets made meanwhile removed, so that the next file
    starts from the S3 server as this one found it."""
    import boto3
    from botocore.config import Config

    creds = sandbox.s3_credentials()
    client = boto3.client("s3", endpoint_url=sandbox.s3_endpoint, aws_access_key_id=creds["access_key"],
                          aws_secret_access_key=creds["secret_key"], region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))
    before = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    yield client
    for bucket in {b["Name"] for b in client.list_buckets().get("Buckets", [])} - before:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=o["Key"])
        client.delete_bucket(Bucket=bucket)
