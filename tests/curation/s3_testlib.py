"""A real S3-compatible server for tests: moto's server mode on 127.0.0.1 (a random free port), one
bucket, and the AWS variables that point every client (pyarrow, Ray workers, jobs) at it."""
from __future__ import annotations

import contextlib
import logging
import socket

BUCKET = "humans-test"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_s3():
    """Yields ``(bucket URI, env)``: ``env`` holds AWS_ENDPOINT_URL and the test credentials."""
    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        pafs.S3FileSystem(endpoint_override=endpoint, region="us-east-1", access_key="test", secret_key="test",
                          allow_bucket_creation=True).create_dir(BUCKET)
        yield f"s3://{BUCKET}", {"AWS_ENDPOINT_URL": endpoint, **CREDENTIALS}
    finally:
        server.stop()
