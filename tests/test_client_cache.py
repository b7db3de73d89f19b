"""Client.download: a content-addressed cache, reused across calls and processes, resumable."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ckptstore.client import Client
from ckptstore.client.cache import DownloadCache, _locked
from ckptstore.errors import CheckpointNotFound, CheckpointNotReady
from tests.conftest import random_bytes
from tests.server_helpers import live_server_and_key, make_server

DATA = random_bytes(3 * 1024 * 1024 + 17, seed=4)


@pytest.fixture
def served(tmp_path):
    """An in-process server, a client of it, and the list of requests the client made."""
    srv = make_server(tmp_path / "server")
    requests: list[httpx.Request] = []
    srv.client.event_hooks["request"].append(requests.append)
    with srv.client:
        key = srv.acme["Authorization"].split()[1]
        with Client("http://testserver", key, http=srv.client) as client:
            yield client, requests


def content_gets(requests: list[httpx.Request]) -> list[httpx.Request]:
    """The requests for blocks (block fetches)."""
    return [r for r in requests if r.method == "POST" and r.url.path.endswith("/blocks/fetch")]


def asked_blocks(request: httpx.Request) -> list[str]:
    return list(json.loads(request.content)["blocks"])


def test_download_returns_the_bytes_and_the_second_call_fetches_none(served, tmp_path):
    client, requests = served
    record = client.put("job_c", DATA)
    path = client.download(record.checkpoint_id, cache_dir=tmp_path / "cache")
    assert path.read_bytes() == DATA
    assert path.parent.name == record.checkpoint_id  # under its own file name
    assert path.name == client.files(record.checkpoint_id)[0].path
    requests.clear()
    again = client.download(record.checkpoint_id, cache_dir=tmp_path / "cache")
    # the server is asked whether this key may read it; its bytes come from the cache
    assert again == path and content_gets(requests) == []
    assert [r.url.path for r in requests] == [f"/v2/training/checkpoints/{record.checkpoint_id}"]


def test_a_cached_checkpoint_is_not_given_to_a_key_that_may_not_read_it(tmp_path):
    srv = make_server(tmp_path / "server")
    cache = tmp_path / "cache"  # one directory both tenants' processes use
    with srv.client:
        acme = Client("http://testserver", srv.acme["Authorization"].split()[1], http=srv.client)
        other = Client("http://testserver", srv.other["Authorization"].split()[1], http=srv.client)
        record = acme.put("job_c", DATA)
        assert acme.download(record.checkpoint_id, cache_dir=cache).read_bytes() == DATA
        with pytest.raises(CheckpointNotFound):
            other.download(record.checkpoint_id, cache_dir=cache)
        acme.delete(record.checkpoint_id)
        with pytest.raises(CheckpointNotFound):  # deleted: the cache does not answer for it
            acme.download(record.checkpoint_id, cache_dir=cache)


def test_equal_bytes_under_another_checkpoint_are_not_fetched_again(served, tmp_path):
    client, requests = served
    first = client.put("job_c", DATA)
    second = client.put("job_d", DATA)
    one = client.download(first.checkpoint_id, cache_dir=tmp_path)
    requests.clear()
    two = client.download(second.checkpoint_id, cache_dir=tmp_path)
    assert two != one and two.read_bytes() == DATA
    assert two.resolve() == one.resolve()  # one blob
    assert content_gets(requests) == []
    assert len(list((tmp_path / "blobs").glob("*[0-9a-f]"))) == 1


def test_an_interrupted_download_is_resumed_from_its_part_file(served, tmp_path):
    client, requests = served
    record = client.put("job_c", DATA)
    etag = client._transport.request("HEAD", client.download_url(record.checkpoint_id))
    digest = etag.headers["etag"].strip('"')
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    half = len(DATA) // 2
    (blobs / f"{digest}.part").write_bytes(DATA[:half])  # what a killed process left
    (blobs / f"{digest}.part.etag").write_text(etag.headers["etag"])
    requests.clear()
    path = client.download(record.checkpoint_id, cache_dir=tmp_path)
    assert path.read_bytes() == DATA
    # only the blocks the part file lacked were asked for
    (get,) = content_gets(requests)
    listing = client._pull.listing(record.checkpoint_id)
    first_half = {
        listing.block_id(i).hex()
        for i in range(len(listing))
        if listing.offsets[i] + listing.raw_lens[i] <= half
    }
    assert first_half and not first_half & set(asked_blocks(get))
    assert not (blobs / f"{digest}.part").exists()


def test_a_corrupt_part_file_is_fetched_again_and_not_kept(served, tmp_path):
    client, _ = served
    record = client.put("job_c", DATA)
    etag = client._transport.request("HEAD", client.download_url(record.checkpoint_id))
    digest = etag.headers["etag"].strip('"')
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / f"{digest}.part").write_bytes(b"\0" * 1000)  # not the bytes
    (tmp_path / "blobs" / f"{digest}.part.etag").write_text(etag.headers["etag"])
    assert client.download(record.checkpoint_id, cache_dir=tmp_path).read_bytes() == DATA
    assert (tmp_path / "blobs" / digest).read_bytes() == DATA


def test_a_pending_checkpoint_cannot_be_downloaded(served, tmp_path):
    client, _ = served
    pending = client.create_pending("job_c")
    with pytest.raises(CheckpointNotReady):
        client.download(pending.checkpoint_id, cache_dir=tmp_path)
    assert not (tmp_path / "blobs").exists() or not any((tmp_path / "blobs").iterdir())


def test_a_folder_entry_refuses_paths_that_leave_it(tmp_path):
    cache = DownloadCache(tmp_path, "http://host:1")
    blob = tmp_path / "blobs" / "ab"
    blob.parent.mkdir()
    blob.write_bytes(b"x")
    with pytest.raises(ValueError, match="inside the checkpoint"):
        cache.link_folder("ckpt_1", {"../escape": blob})
    linked = cache.link_folder("ckpt_1", {"a/b.bin": blob, "c.json": blob})
    assert (linked / "a" / "b.bin").read_bytes() == b"x"
    assert not list(cache.folders.glob(".*tmp"))


def test_a_folder_checkpoint_is_a_folder_of_links_and_shares_unchanged_files(served, tmp_path):
    client, requests = served
    folder = tmp_path / "run" / "checkpoint-2"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.bin").write_bytes(DATA)
    (folder / "sub" / "state.json").write_text('{"step": 2}')
    first = client.put("job_f", folder)
    path = client.download(first.checkpoint_id, cache_dir=tmp_path / "cache")
    assert path.is_dir() and path.name == first.checkpoint_id
    assert (path / "model.bin").read_bytes() == DATA
    assert (path / "sub" / "state.json").read_text() == '{"step": 2}'

    (folder / "sub" / "state.json").write_text('{"step": 4}')  # the weights unchanged
    second = client.put("job_f", folder)
    requests.clear()
    again = client.download(second.checkpoint_id, cache_dir=tmp_path / "cache")
    assert (again / "sub" / "state.json").read_text() == '{"step": 4}'
    assert (again / "model.bin").resolve() == (path / "model.bin").resolve()
    (fetched,) = content_gets(requests)  # the blocks of the one changed file
    listing = client._pull.listing(second.checkpoint_id)
    (state,) = [f for f in listing.files if f.path == "sub/state.json"]
    blocks = listing.blocks_of(state)
    assert asked_blocks(fetched) == [listing.block_id(i).hex() for i in blocks]


DOWNLOAD = """
import sys
import time
from ckptstore.client import Client
with Client(sys.argv[1], sys.argv[2]) as client:
    print(client.download(sys.argv[3], cache_dir=sys.argv[4]))
"""


def wait_for_lists(client: Client, count: int) -> None:
    """Until the server has answered ``count`` requests for block lists."""
    deadline = time.monotonic() + 60
    pattern = re.compile(
        r'^ckptstore_requests_total\{method="GET",route="/v2/training/checkpoints/'
        r'\{checkpointId\}/blocks".*\} (\S+)$',
        re.M,
    )
    while time.monotonic() < deadline:
        text = client._transport.request("GET", "/metrics").text
        if sum(float(n) for n in pattern.findall(text)) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"the server did not see {count} block lists asked:\n{text}")


def test_processes_downloading_at_once_fetch_the_bytes_once(tmp_path):
    cache_dir = tmp_path / "cache"
    with (
        live_server_and_key(tmp_path / "data", admin=True) as (base, key),
        Client(base, key) as client,
    ):
        record = client.put("job_c", DATA)
        head = client._transport.request("HEAD", client.download_url(record.checkpoint_id))
        digest = head.headers["etag"].strip('"')
        (cache_dir / "blobs").mkdir(parents=True)
        args = [base, key, record.checkpoint_id, str(cache_dir)]
        # the test holds the blob's lock until all three have asked for the block list
        # (after which each waits for the lock)
        with _locked(cache_dir / "blobs" / f"{digest}.lock"):
            procs = [
                subprocess.Popen(
                    [sys.executable, "-c", DOWNLOAD, *args],
                    stdout=subprocess.PIPE,
                    text=True,
                    env={**os.environ, "PYTHONPATH": os.getcwd()},
                )
                for _ in range(3)
            ]
            wait_for_lists(client, 3)
        outputs = [proc.communicate(timeout=120)[0].strip() for proc in procs]
        metrics = client._transport.request("GET", "/metrics").text
    assert all(proc.returncode == 0 for proc in procs)
    assert len(set(outputs)) == 1 and Path(outputs[0]).read_bytes() == DATA
    assert sorted(p.name for p in (cache_dir / "blobs").iterdir()) == [digest, f"{digest}.lock"]
    # the server sent the bytes once: the other two found the blob when the lock let them in
    sent = re.search(r"^ckptstore_downloaded_bytes_total (\S+)$", metrics, re.M)
    assert sent is not None and len(DATA) <= float(sent.group(1)) < 1.05 * len(DATA)
