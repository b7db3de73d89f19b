"""The S3 endpoint's own speed on pack-sized objects, through the client the S3 block
store uses (boto3), and through obstore when it is installed (the comparison behind
choosing boto3: docs/design.md, "Packs on object storage").

    python -m bench.s3_endpoint [--size-mb 32] [--repeat 5] [--endpoint URL]

Against moto's S3 server on loopback unless ``--endpoint`` (credentials from the AWS
variables). Each figure is the median of ``--repeat`` runs: one object written with
If-None-Match (``PutObject``; a multipart upload of 8 MiB parts), read whole, and
read as 64 ranged GETs of 256 KiB spread over it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import Callable

from bench.common import save_report

MIB = 1 << 20
PART = 8 * MIB


def median_s(repeat: int, run: Callable[[int], object]) -> float:
    times = []
    for i in range(repeat):
        start = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def boto3_figures(endpoint: str, bucket: str, data: bytes, repeat: int) -> dict[str, float]:
    from ckptstore.store.blockstore.s3 import s3_client

    s3 = s3_client(endpoint)

    def multipart(i: int) -> None:
        key = f"boto3-mp-{i}"
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        parts = []
        for number, start in enumerate(range(0, len(data), PART), 1):
            body = data[start : start + PART]
            sent = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=body
            )
            parts.append({"ETag": sent["ETag"], "PartNumber": number})
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload,
            MultipartUpload={"Parts": parts},
            IfNoneMatch="*",
        )

    step = len(data) // 64
    return {
        "put": median_s(
            repeat,
            lambda i: s3.put_object(Bucket=bucket, Key=f"boto3-{i}", Body=data, IfNoneMatch="*"),
        ),
        "multipart put": median_s(repeat, multipart),
        "get": median_s(
            repeat, lambda i: s3.get_object(Bucket=bucket, Key=f"boto3-{i}")["Body"].read()
        ),
        "64 ranged gets": median_s(
            repeat,
            lambda i: [
                s3.get_object(
                    Bucket=bucket, Key=f"boto3-{i}", Range=f"bytes={o}-{o + 256 * 1024 - 1}"
                )["Body"].read()
                for o in range(0, 64 * step, step)
            ],
        ),
    }


def obstore_figures(endpoint: str, bucket: str, data: bytes, repeat: int) -> dict[str, float]:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        bucket,
        endpoint=endpoint,
        region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        client_options={"allow_http": True},
    )
    step = len(data) // 64
    return {
        "put": median_s(repeat, lambda i: obstore.put(store, f"obs-{i}", data, mode="create")),
        # obstore makes a conditional put a single PutObject: its multipart is unconditional
        "multipart put": median_s(
            repeat,
            lambda i: obstore.put(store, f"obs-mp-{i}", data, use_multipart=True, chunk_size=PART),
        ),
        "get": median_s(repeat, lambda i: bytes(obstore.get(store, f"obs-{i}").bytes())),
        "64 ranged gets": median_s(
            repeat,
            lambda i: [
                bytes(obstore.get_range(store, f"obs-{i}", start=o, length=256 * 1024))
                for o in range(0, 64 * step, step)
            ],
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--endpoint", default=None)
    args = parser.parse_args()
    server = None
    endpoint = args.endpoint
    if endpoint is None:
        from moto.server import ThreadedMotoServer

        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.setdefault(name, "testing")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
    from ckptstore.store.blockstore.s3 import s3_client

    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3_client(endpoint).create_bucket(Bucket=bucket)
    data = os.urandom(args.size_mb * MIB)
    figures = {"boto3": boto3_figures(endpoint, bucket, data, args.repeat)}
    with contextlib.suppress(ImportError):
        figures["obstore"] = obstore_figures(endpoint, bucket, data, args.repeat)
    if server is not None:
        server.stop()
    where = "moto on loopback" if args.endpoint is None else args.endpoint
    lines = [
        f"{args.size_mb} MiB objects, {where}; median of {args.repeat}, milliseconds.",
        "",
        "| client | " + " | ".join(figures["boto3"]) + " |",
        "|---" * (len(figures["boto3"]) + 1) + "|",
    ]
    for client, row in figures.items():
        lines.append(f"| {client} | " + " | ".join(f"{s * 1000:.0f}" for s in row.values()) + " |")
    print("\n".join(lines))
    save_report("s3-endpoint", "S3 endpoint speed per client", lines, figures)


if __name__ == "__main__":
    main()
