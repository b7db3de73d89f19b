"""The remote Client against the app: push only what changed, pull, resume, retries."""

from __future__ import annotations

import pytest

from ckptstore.client import Client
from ckptstore.errors import (
    AuthenticationFailed,
    CheckpointNotFound,
    CheckpointPinned,
    InvalidLimit,
)
from tests.conftest import random_bytes
from tests.server_helpers import JOB, make_server

MB = 1_000_000
DATA = random_bytes(8 * MB, seed=31)


@pytest.fixture
def srv(tmp_path):
    server = make_server(tmp_path)
    with server.client:
        yield server


@pytest.fixture
def client(srv):
    key = srv.acme["Authorization"].split()[1]
    with Client("http://testserver", key, http=srv.client, sleep=lambda s: None) as c:
        yield c


def test_put_and_restore_round_trip(client, tmp_path):
    record = client.put(JOB, DATA, epoch=3, step=1200, metrics={"loss": 0.5})
    assert (record.status, record.type, record.epoch, record.size_bytes) == (
        "ready",
        "automatic",
        3,
        len(DATA),
    )
    out = tmp_path / "restored.bin"
    assert client.restore(record.checkpoint_id, out) == len(DATA)
    assert out.read_bytes() == DATA
    assert not (tmp_path / "restored.bin.part").exists()
    with client.open_reader(record.checkpoint_id) as reader:
        reader.seek(MB + 7)
        assert reader.read(1000) == DATA[MB + 7 : MB + 1007]


def test_push_of_a_five_percent_change_sends_about_five_percent(client, srv):
    """Two changed regions (say, two layers' tensors), 5% of a 64 MB checkpoint."""
    size = 64 * MB
    old = random_bytes(size, seed=40)
    client.put(JOB, old)
    region = size // 40
    new = bytearray(old)
    new[10 * MB : 10 * MB + region] = random_bytes(region, seed=41)
    new[40 * MB : 40 * MB + region] = random_bytes(region, seed=42)
    before_sent, before_stored = client.bytes_sent, srv.store.stats().stored_bytes
    record = client.put(JOB, bytes(new))
    assert client.bytes_sent - before_sent <= 0.10 * size
    assert srv.store.stats().stored_bytes - before_stored <= 0.10 * size  # counted on the server
    with client.open_reader(record.checkpoint_id) as reader:
        assert reader.read() == bytes(new)


def test_unchanged_push_sends_no_block(client):
    client.put(JOB, DATA)
    sent = client.bytes_sent
    again = client.put(JOB, iter([DATA[:12345], DATA[12345:]]))
    assert client.bytes_sent == sent and again.stored_bytes == 0


def test_interrupted_pull_resumes_from_the_part_file(client, tmp_path):
    record = client.put(JOB, DATA)
    out = tmp_path / "model.bin"
    client.restore(record.checkpoint_id, out)
    # simulate an interrupted earlier attempt: a partial file with the right ETag
    etag = client._transport.request("HEAD", client.download_url(record.checkpoint_id)).headers[
        "etag"
    ]
    out.unlink()
    (tmp_path / "model.bin.part").write_bytes(DATA[: 3 * MB])
    (tmp_path / "model.bin.part.etag").write_text(etag)
    seen: list[int] = []
    assert client.restore(record.checkpoint_id, out, progress=seen.append) == len(DATA)
    assert out.read_bytes() == DATA
    # the whole blocks in the part file count as already there, and are not fetched again
    assert 2 * MB < seen[0] <= 3 * MB and sum(seen) == len(DATA)


def test_a_corrupt_part_file_is_fetched_again_block_by_block(client, tmp_path):
    record = client.put(JOB, DATA)
    etag = client._transport.request("HEAD", client.download_url(record.checkpoint_id)).headers[
        "etag"
    ]
    (tmp_path / "x.bin.part").write_bytes(b"\0" * MB)  # wrong bytes under the right ETag
    (tmp_path / "x.bin.part.etag").write_text(etag)
    seen: list[int] = []
    assert client.restore(record.checkpoint_id, tmp_path / "x.bin", progress=seen.append) == len(
        DATA
    )
    assert (tmp_path / "x.bin").read_bytes() == DATA and not (tmp_path / "x.bin.part").exists()
    assert sum(seen) == len(DATA)  # no block of the part file was taken


def test_list_get_delete_jobs_settings_and_endpoints(client):
    a = client.put(JOB, b"a" * 1000, epoch=1, metrics={"validationLoss": 0.9})
    b = client.put(JOB, b"b" * 1000, epoch=2, metrics={"validationLoss": 0.5})
    page = client.list(JOB, sort_by="validationLoss", order="asc", limit=None)
    assert page.total_count == 3 and page.checkpoints[0].metrics["validationLoss"] == 0.5
    assert [r.type for r in client.list(JOB, types=("best",)).checkpoints] == ["best"]
    assert client.jobs() == [JOB] and client.get(a.checkpoint_id).epoch == 1
    endpoint = client.deploy(b.checkpoint_id, name="serve", gpu_ids=["rtx-4090"], worker_count=1)
    with pytest.raises(CheckpointPinned) as pinned:
        client.delete(b.checkpoint_id)
    assert pinned.value.endpoint_ids == [endpoint.endpoint_id]
    client.undeploy(endpoint.endpoint_id)
    client.delete(b.checkpoint_id)
    with pytest.raises(CheckpointNotFound):
        client.get(b.checkpoint_id)
    from ckptstore.store.policies import JobSettings

    assert client.set_job_settings(JOB, JobSettings(keep_automatic=3)).keep_automatic == 3
    assert client.stats().checkpoints == 2


def test_errors_map_to_exception_classes(srv):
    bad_key = "ck_00000000_" + "x" * 43
    with (
        Client("http://testserver", bad_key, http=srv.client) as bad,
        pytest.raises(AuthenticationFailed),
    ):
        bad.jobs()
    key = srv.acme["Authorization"].split()[1]
    with Client("http://testserver", key, http=srv.client) as good:
        with pytest.raises(InvalidLimit) as info:
            good.list(JOB, limit=10_001)
        assert info.value.http_status == 422 and info.value.parameter == "limit"


def test_wire_compression_stops_when_it_does_not_pay_and_probes_again():
    from ckptstore.client.push import WireCompression

    wire = WireCompression()
    assert wire.should_compress()
    wire.observe(1000, 950)  # 5% saved: not worth the CPU
    decisions = [wire.should_compress() for _ in range(WireCompression.PROBE_EVERY)]
    assert decisions.count(True) == 1  # one probe per PROBE_EVERY batches
    wire.observe(1000, 300)  # text-like data again: compress
    assert wire.should_compress()


def test_compressible_uploads_go_compressed_and_round_trip(client):
    text = b"epoch loss accuracy validation " * 300_000
    record = client.put(JOB, text)
    with client.open_reader(record.checkpoint_id) as reader:
        assert reader.read() == text


def test_pushed_checkpoints_of_a_job_are_stored_as_deltas(client, srv, tmp_path):
    from ckptstore.store.codecs.ids import Codec
    from ckptstore.testing.formats import safetensors_bytes
    from tests.test_deltas import model

    first = safetensors_bytes(model(7, 0))
    second = safetensors_bytes(model(7, 1))
    a = client.put(JOB, first)
    b = client.put(JOB, second)
    srv.store.settle()
    catalog = srv.store.context.catalog
    older = [r for _, r in catalog.manifest(a.checkpoint_id)]
    newer = {r.block_id: r for _, r in catalog.manifest(b.checkpoint_id)}
    assert Codec.BIASED_DELTA in [r.codec for r in older]  # the older one, on the newer
    assert {r.base_id for r in older if r.base_id} <= newer.keys()
    assert Codec.BIASED_DELTA not in [r.codec for r in newer.values()]
    assert srv.store.stats().stored_bytes < 0.85 * (a.stored_bytes + b.stored_bytes)
    for record, data in ((a, first), (b, second)):
        assert client.restore(record.checkpoint_id, tmp_path / "x.bin") == len(data)
        assert (tmp_path / "x.bin").read_bytes() == data
