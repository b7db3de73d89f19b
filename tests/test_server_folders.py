"""Folder checkpoints over HTTP: /files, a signed URL per file, the tar download
(Range too), uploads of folders by blocks, and unsafe paths refused."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from ckptstore import Client
from tests.server_helpers import JOB, make_server
from tests.test_cli import sample_folder


@pytest.fixture
def srv(tmp_path, store_catalog, catalog_kind, blocks_kind):
    server = make_server(tmp_path, catalog=store_catalog(tmp_path / "data"))
    with server.client:
        yield server


@pytest.fixture
def client(srv):
    key = srv.acme["Authorization"].split()[1]
    with Client("http://testserver", key, http=srv.client, sleep=lambda s: None) as c:
        yield c


@pytest.fixture
def folder(tmp_path) -> Path:
    return sample_folder(tmp_path / "ckdir")


def tree_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_files_route_lists_each_file_with_sha256_and_its_own_signed_url(srv, client, folder):
    record = client.put(JOB, folder)
    assert record.sha256 is None  # the server reads an upload back after its commit
    srv.store.settle()
    body = srv.client.get(
        f"/v2/training/checkpoints/{record.checkpoint_id}/files", headers=srv.acme
    )
    assert body.status_code == 200
    answer = body.json()
    expected = tree_of(folder)
    assert answer["layout"] == "tree" and [f["path"] for f in answer["files"]] == sorted(expected)
    for entry in answer["files"]:
        data = expected[entry["path"]]
        assert entry["sizeBytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        got = srv.client.get(entry["downloadUrl"])  # no key needed
        assert got.status_code == 200 and got.content == data
    assert answer["files"][3]["mode"] == 0o600  # optimizer.pt
    # another tenant sees nothing of it
    hidden = srv.client.get(
        f"/v2/training/checkpoints/{record.checkpoint_id}/files", headers=srv.other
    )
    assert hidden.status_code == 404


def test_file_url_serves_ranges_and_is_bound_to_its_path(srv, client, folder):
    record = client.put(JOB, folder)
    files = srv.client.get(
        f"/v2/training/checkpoints/{record.checkpoint_id}/files", headers=srv.acme
    ).json()["files"]
    url = files[0]["downloadUrl"]
    data = (folder / files[0]["path"]).read_bytes()
    part = srv.client.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    swapped = url.replace(files[0]["path"], files[1]["path"])
    assert srv.client.get(swapped).status_code == 403
    whole = url.split("/files/")[0] + "?" + url.split("?")[1]  # a file's signature
    assert srv.client.get(whole).status_code == 403


def test_download_url_of_a_folder_is_a_tar_with_ranges(srv, client, folder):
    record = client.put(JOB, folder)
    view = srv.client.get(f"/v2/training/checkpoints/{record.checkpoint_id}", headers=srv.acme)
    url = view.json()["downloadUrl"]
    whole = srv.client.get(url)
    assert whole.status_code == 200 and whole.headers["content-type"] == "application/x-tar"
    assert int(whole.headers["content-length"]) == len(whole.content)
    with tarfile.open(fileobj=io.BytesIO(whole.content)) as tar:
        members = tar.getmembers()
        assert {m.name: tar.extractfile(m).read() for m in members} == tree_of(folder)
        assert {m.uid for m in members} == {0}
        assert {m.mtime for m in members} == {int(record.created_at)}
    size = len(whole.content)
    for start, end in ((0, 511), (600, 300_000), (size - 2000, size - 1)):
        part = srv.client.get(url, headers={"Range": f"bytes={start}-{end}"})
        assert part.status_code == 206
        assert part.content == whole.content[start : end + 1]
        assert part.headers["content-range"] == f"bytes {start}-{end}/{size}"
    again = srv.client.get(url)
    assert again.content == whole.content  # deterministic


def test_client_folder_round_trip_sends_only_missing_blocks(srv, client, folder, tmp_path):
    first = client.put(JOB, folder)
    sent = client.bytes_sent
    assert sent >= sum(len(d) for d in tree_of(folder).values()) * 0.9
    (folder / "sub" / "dir" / "trainer_state.json").write_bytes(b'{"step": 2}')
    second = client.put(JOB, folder)
    assert client.bytes_sent - sent < 1000  # only the changed file's block
    assert client.restore(second.checkpoint_id, tmp_path / "out") == second.size_bytes
    assert tree_of(tmp_path / "out") == tree_of(folder)
    srv.store.settle()  # the files' SHA-256 are read back after the commit
    assert client.files(second.checkpoint_id) == srv.store.files(
        second.checkpoint_id, tenant="acme"
    )
    with client.open_reader(first.checkpoint_id, path="optimizer.pt") as reader:
        assert reader.read() == (folder / "optimizer.pt").read_bytes()


@pytest.mark.parametrize("path", ["../escape", "/abs", "a//b", "a/./b"])
def test_commit_with_an_unsafe_path_is_refused_with_4xx(srv, path):
    created = srv.client.post(f"/v2/training/jobs/{JOB}/checkpoints", headers=srv.acme, json={})
    cid = created.json()["checkpointId"]
    body = {"blockIds": [], "files": [{"path": path, "sizeBytes": 0}], "layout": "tree"}
    answer = srv.client.post(f"/v2/training/checkpoints/{cid}/commit", headers=srv.acme, json=body)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["type"] == "InvalidPath" and error["fields"]["value"] == path
    assert (
        srv.client.get(f"/v2/training/checkpoints/{cid}", headers=srv.acme).json()["status"]
        == "pending"
    )


def test_streamed_upload_may_name_its_file(srv):
    created = srv.client.post(f"/v2/training/jobs/{JOB}/checkpoints", headers=srv.acme, json={})
    cid = created.json()["checkpointId"]
    put = srv.client.put(
        f"/v2/training/checkpoints/{cid}/data",
        params={"fileName": "adapter.safetensors"},
        headers=srv.acme,
        content=b"weights" * 100,
    )
    assert put.status_code == 200
    assert put.json()["sha256"] == hashlib.sha256(b"weights" * 100).hexdigest()
    download = srv.client.get(put.json()["downloadUrl"])
    assert 'filename="adapter.safetensors"' in download.headers["content-disposition"]
    bad = srv.client.post(f"/v2/training/jobs/{JOB}/checkpoints", headers=srv.acme, json={})
    refused = srv.client.put(
        f"/v2/training/checkpoints/{bad.json()['checkpointId']}/data",
        params={"fileName": "../up"},
        headers=srv.acme,
        content=b"x",
    )
    assert refused.status_code == 422 and refused.json()["error"]["type"] == "InvalidPath"


def test_client_folder_of_many_files_cut_at_once_keeps_their_order(srv, client, tmp_path):
    """Files are cut several at a time; the block list and the files stay in order."""
    from tests.conftest import random_bytes

    root = tmp_path / "dcp"
    root.mkdir()
    expected = {}
    for rank in range(24):
        data = random_bytes(1000 + 37_000 * (rank % 5), seed=rank)
        expected[f"__{rank}_0.distcp"] = data
        (root / f"__{rank}_0.distcp").write_bytes(data)
    (root / ".metadata").write_bytes(b"meta")
    expected[".metadata"] = b"meta"
    record = client.put(JOB, root)
    assert [f.path for f in client.files(record.checkpoint_id)] == sorted(expected)
    client.restore(record.checkpoint_id, tmp_path / "out")
    assert tree_of(tmp_path / "out") == expected
    assert srv.store.verify(read_data=True).ok
