"""Checkpoints that are folders (files.py): stored, listed, read and restored file by
file, byte-exact with their modes, deltas paired by path, SHA-256 of every file."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ckptstore.errors import InvalidArgument, InvalidPath
from ckptstore.store.catalog.records import FileRecord
from ckptstore.store.files import check_path, tree_digest
from ckptstore.testing.formats import safetensors_bytes
from tests.conftest import restore_bytes


def write_tree(root: Path, files: dict[str, bytes], modes: dict[str, int] | None = None) -> Path:
    for path, data in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        os.chmod(target, (modes or {}).get(path, 0o644))
    return root


def shard(seed: int, step: int) -> bytes:
    """A safetensors shard whose tensor is named as every other shard's (``w``)."""
    values = np.random.default_rng(seed).standard_normal(600_000).astype(np.float32)
    noise = np.random.default_rng(seed + 100 * step).standard_normal(600_000) * 1e-4
    return safetensors_bytes({"w": values + noise.astype(np.float32) * step})


def folder(tmp_path: Path, step: int = 0) -> Path:
    rng = np.random.default_rng(7)
    return write_tree(
        tmp_path / f"ckpt{step}",
        {
            "model-00001-of-00002.safetensors": shard(1, step),
            "model-00002-of-00002.safetensors": shard(2, step),
            "model.safetensors.index.json": b'{"weight_map": {}}\n',
            "optimizer.pt": rng.bytes(200_000),
            "rng_state.pth": b"",
            "nested/deeper/trainer_state.json": b'{"global_step": %d}\n' % step,
        },
        {"optimizer.pt": 0o600, "nested/deeper/trainer_state.json": 0o755},
    )


def test_folder_round_trips_byte_exact_with_modes(store, tmp_path):
    source = folder(tmp_path)
    record = store.put("job", source)
    assert record.layout == "tree"
    out = tmp_path / "out"
    written = store.restore(record.checkpoint_id, out)
    assert (
        written
        == record.size_bytes
        == sum(f.stat().st_size for f in source.rglob("*") if f.is_file())
    )
    assert subprocess.run(["diff", "-r", source, out]).returncode == 0
    for path in source.rglob("*"):
        restored = out / path.relative_to(source)
        assert restored.stat().st_mode == path.stat().st_mode, path
    assert store.verify(read_data=True).ok


def test_files_list_paths_in_order_with_sizes_modes_and_sha256(store, tmp_path):
    source = folder(tmp_path)
    record = store.put("job", source)
    files = store.files(record.checkpoint_id)
    expected = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    assert [f.path for f in files] == expected
    offset = 0
    for f in files:
        data = (source / f.path).read_bytes()
        assert (f.offset, f.size_bytes) == (offset, len(data))
        assert f.mode == (source / f.path).stat().st_mode & 0o777
        assert f.sha256 == hashlib.sha256(data).hexdigest()
        offset += len(data)
    listing = "".join(
        f"{hashlib.sha256((source / p).read_bytes()).hexdigest()}  {p}\n" for p in expected
    )
    assert record.sha256 == hashlib.sha256(listing.encode()).hexdigest()
    assert store.get(record.checkpoint_id).sha256 == record.sha256


def test_one_file_of_a_folder_reads_on_its_own(store, tmp_path):
    source = folder(tmp_path)
    record = store.put("job", source)
    path = "model-00002-of-00002.safetensors"
    with store.open_reader(record.checkpoint_id, path=path) as reader:
        reader.seek(1000)
        assert reader.read(5000) == (source / path).read_bytes()[1000:6000]
        reader.seek(0)
        assert reader.read() == (source / path).read_bytes()
    with store.open_reader(record.checkpoint_id, path="rng_state.pth") as reader:
        assert reader.read() == b""
    with pytest.raises(InvalidArgument):
        store.open_reader(record.checkpoint_id, path="missing.bin")
    with pytest.raises(InvalidArgument):
        store.open_reader(record.checkpoint_id)  # which file?


def test_a_folder_with_no_file_is_refused(store, tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(InvalidArgument):
        store.put("job", tmp_path / "empty")
    assert store.list("job").total_count == 0


def test_single_file_keeps_its_name_and_a_stream_gets_the_default(store, tmp_path):
    source = tmp_path / "weights.npy"
    source.write_bytes(b"x" * 1000)
    from_path = store.put("job", source)
    from_bytes = store.put("job", b"y" * 1000)
    assert from_path.layout == from_bytes.layout == "file"
    assert [f.path for f in store.files(from_path.checkpoint_id)] == ["weights.npy"]
    assert [f.path for f in store.files(from_bytes.checkpoint_id)] == [
        f"{from_bytes.checkpoint_id}.ckpt"
    ]
    named = store.put("job", b"z" * 10, file_name="adapter.safetensors")
    assert [f.path for f in store.files(named.checkpoint_id)] == ["adapter.safetensors"]
    assert from_path.sha256 == hashlib.sha256(b"x" * 1000).hexdigest()
    assert from_bytes.sha256 == hashlib.sha256(b"y" * 1000).hexdigest()
    out = tmp_path / "out"
    out.mkdir()
    store.restore(from_path.checkpoint_id, out)  # into a folder: under its own name
    assert (out / "weights.npy").read_bytes() == b"x" * 1000


def test_sha256_of_a_stream_matches_hashlib_across_windows(store):
    data = np.random.default_rng(3).bytes(5 * 1024 * 1024 + 17)
    chunks = (data[i : i + 70_001] for i in range(0, len(data), 70_001))
    record = store.put("job", chunks)
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert restore_bytes(store, record.checkpoint_id) == data


def test_deltas_pair_each_block_with_the_same_file_of_the_next_checkpoint(store, tmp_path):
    """Both shards name their tensor ``w``: paired by slot alone, one shard's blocks
    would meet the other's. The parent's tensor blocks become deltas on the blocks at
    the same place of the same file, and the second save costs far less."""
    first = store.put("job", folder(tmp_path, 0))
    store.settle()
    one_copy = store.stats().stored_bytes
    second = store.put("job", folder(tmp_path, 1))
    store.settle()
    catalog = store.context.catalog
    old = dict(catalog.manifest(first.checkpoint_id))
    new = dict(catalog.manifest(second.checkpoint_id))
    shards = [f for f in store.files(first.checkpoint_id) if f.path.endswith(".safetensors")]
    paired = 0
    for f in shards:
        for offset, block in old.items():
            if f.offset <= offset < f.offset + f.size_bytes and block.base_id is not None:
                assert block.base_id == new[offset].block_id
                paired += 1
    assert paired >= 4
    assert store.stats().stored_bytes < 1.6 * one_copy
    for record, step in ((first, 0), (second, 1)):
        out = tmp_path / f"out{step}"
        store.restore(record.checkpoint_id, out)
        assert subprocess.run(["diff", "-r", folder(tmp_path, step), out]).returncode == 0
    assert store.verify(read_data=True).ok


def test_best_copy_of_a_folder_has_its_files(store, tmp_path):
    record = store.put("job", folder(tmp_path), metrics={"validationLoss": 0.5})
    best = store.list("job", types=("best",)).checkpoints[0]
    assert best.layout == "tree" and best.sha256 == record.sha256
    assert store.files(best.checkpoint_id) == store.files(record.checkpoint_id)
    store.delete(record.checkpoint_id)
    out = tmp_path / "out"
    store.restore(best.checkpoint_id, out)
    assert subprocess.run(["diff", "-r", folder(tmp_path), out]).returncode == 0


def test_folder_upload_commits_files_then_the_sha256_of_what_it_reads_back(store, tmp_path):
    from tests.conftest import client_blocks

    parts = {"a/one.bin": np.random.default_rng(1).bytes(300_000), "b.bin": b"", "c.bin": b"c"}
    ids: list[bytes] = []
    with store.begin_upload("job") as upload:
        for data in parts.values():
            blocks = client_blocks(store, data)
            for bid, block in blocks:
                if upload.missing([bid]):
                    upload.put_block(bid, block)
            ids += [bid for bid, _ in blocks]
        files = [(path, len(data), 0o640) for path, data in sorted(parts.items())]
        record = upload.commit(ids, None, files, tree=True)
    assert record.layout == "tree" and record.sha256 is None  # not read back yet
    store.settle()
    listed = store.files(record.checkpoint_id)
    assert [f.sha256 for f in listed] == [hashlib.sha256(parts[f.path]).hexdigest() for f in listed]
    assert store.get(record.checkpoint_id).sha256 == tree_digest(listed)
    store.restore(record.checkpoint_id, tmp_path / "out")
    for path, data in parts.items():
        assert (tmp_path / "out" / path).read_bytes() == data


def test_upload_commit_refuses_files_that_cut_a_block_or_escape(store):
    from tests.conftest import client_blocks

    data = np.random.default_rng(1).bytes(300_000)
    blocks = client_blocks(store, data)
    for bad in (
        [("a", 1000, 0o644), ("b", len(data) - 1000, 0o644)],  # 1000 is inside a block
        [("../a", len(data), 0o644)],
        [("b", len(data) - 1, 0o644)],  # sizes do not add up
    ):
        with store.begin_upload("job") as upload:
            for bid, block in blocks:
                upload.put_block(bid, block)
            with pytest.raises(InvalidArgument):
                upload.commit([bid for bid, _ in blocks], None, bad, tree=True)
    assert store.list("job").total_count == 0


@pytest.mark.parametrize(
    "path",
    ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/", "a\\b", "a\0b", "a\nb", "a\x7fb"],
)
def test_unsafe_paths_are_refused(path):
    with pytest.raises(InvalidPath):
        check_path(path)


def test_tree_digest_is_the_sha256_of_the_sha256sum_listing(tmp_path):
    source = write_tree(tmp_path / "t", {"b": b"2", "a/x": b"1"})
    listing = subprocess.run(
        "find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum",
        shell=True,
        cwd=source,
        capture_output=True,
        check=True,
    ).stdout
    files = [
        FileRecord("a/x", 0, 1, 0o644, hashlib.sha256(b"1").hexdigest()),
        FileRecord("b", 1, 1, 0o644, hashlib.sha256(b"2").hexdigest()),
    ]
    assert tree_digest(files) == hashlib.sha256(listing).hexdigest()


def test_a_checkpoint_committed_without_digests_gets_them_in_the_background(store, tmp_path):
    """What a commit leaves unknown (a best copy of such a checkpoint too) is read back
    and hashed after it; an open resumes what a closed store left."""
    data = b"abc" * 100_000
    record = store.put("job", data)
    catalog = store.context.catalog
    with catalog._write() as conn:  # as a commit without digests leaves it
        conn.execute("UPDATE files SET sha256 = NULL")
        conn.execute("UPDATE checkpoints SET sha256 = NULL")
    assert catalog.undigested() == [record.checkpoint_id]
    store._committer.resume_digests()
    store.settle()
    assert store.get(record.checkpoint_id).sha256 == hashlib.sha256(data).hexdigest()
    assert store.files(record.checkpoint_id)[0].sha256 == hashlib.sha256(data).hexdigest()


def test_upload_commit_refuses_a_file_inside_another_files_path(store):
    """ "a" and "a/b" could be stored but never written back as one folder."""
    from tests.conftest import client_blocks

    data = np.random.default_rng(2).bytes(300_000)
    blocks = client_blocks(store, data)
    with store.begin_upload("job") as upload:
        for bid, block in blocks:
            upload.put_block(bid, block)
        ids = [bid for bid, _ in blocks] * 3
        files = [("a", len(data), 0o644), ("a-b", len(data), 0o644), ("a/b", len(data), 0o644)]
        with pytest.raises(InvalidArgument, match="a/b"):
            upload.commit(ids, None, files, tree=True)
    assert store.list("job").total_count == 0


def test_a_single_file_name_holds_no_folder(store, tmp_path):
    from tests.conftest import client_blocks

    with pytest.raises(InvalidPath):
        store.put("job", b"data", file_name="sub/x.bin")
    data = np.random.default_rng(3).bytes(100_000)
    blocks = client_blocks(store, data)
    with store.begin_upload("job") as upload:
        for bid, block in blocks:
            upload.put_block(bid, block)
        with pytest.raises(InvalidPath):
            upload.commit([b for b, _ in blocks], None, [("sub/x.bin", len(data), 0o644)])
    assert store.list("job").total_count == 0
