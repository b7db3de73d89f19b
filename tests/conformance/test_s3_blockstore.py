"""The S3 block store against moto's S3 server: the shipped suite, and what only
object storage has (multipart uploads, their sweep, the URL)."""

from __future__ import annotations

import time

import pytest

from ckptstore.errors import InvalidArgument, PackNotFound
from ckptstore.store.blockstore import open_blockstore
from ckptstore.store.blockstore.s3 import PART_BYTES, S3BlockStore, S3Location
from ckptstore.testing.blockstore_tests import BlockStoreTests
from tests.conftest import random_bytes

EARLY = 1_000_000_000.0  # 2001-09-09


class TestS3BlockStore(BlockStoreTests):
    @pytest.fixture
    def store(self, s3_bucket: str) -> S3BlockStore:
        blocks = open_blockstore(f"s3://{s3_bucket}/packs")
        assert isinstance(blocks, S3BlockStore)
        return blocks

    def uploads(self, store: S3BlockStore) -> list[str]:
        """The keys of the multipart uploads in progress in the store's bucket."""
        answer = store.client.list_multipart_uploads(Bucket=store.location.bucket)
        return [upload["Key"] for upload in answer.get("Uploads", [])]

    def test_a_large_object_goes_up_in_parts_and_appears_at_commit(
        self, store: S3BlockStore
    ) -> None:
        data = random_bytes(2 * PART_BYTES + 12345, seed=1)
        pending = store.begin("pack0100")
        for start in range(0, len(data), 1 << 20):
            pending.write(memoryview(data)[start : start + (1 << 20)])
        assert self.uploads(store) == ["packs/pack0100.pack"]  # parts sent already
        assert list(store.list()) == []
        pending.commit()
        assert self.uploads(store) == []
        assert store.get("pack0100") == data
        assert store.get("pack0100", PART_BYTES - 10, 20) == data[PART_BYTES - 10 : PART_BYTES + 10]
        assert [(o.name, o.size) for o in store.list()] == [("pack0100", len(data))]

    def test_a_multipart_commit_never_replaces_an_object(self, store: S3BlockStore) -> None:
        store.put("pack0101", b"first")
        pending = store.begin("pack0101")
        pending.write(random_bytes(PART_BYTES + 1, seed=2))
        with pytest.raises(FileExistsError):
            pending.commit()
        assert store.get("pack0101") == b"first"
        assert self.uploads(store) == []  # the refused upload is not left behind

    def test_an_aborted_multipart_object_leaves_no_upload(self, store: S3BlockStore) -> None:
        pending = store.begin("pack0102")
        pending.write(random_bytes(PART_BYTES, seed=3))
        assert self.uploads(store) == ["packs/pack0102.pack"]
        pending.abort()
        assert self.uploads(store) == []
        with pytest.raises(PackNotFound):
            store.get("pack0102")

    def test_sweep_aborts_only_uploads_started_before_the_cutoff(self, store: S3BlockStore) -> None:
        crashed = store.begin("pack0103")
        crashed.write(random_bytes(PART_BYTES, seed=4))  # a writer that never returns
        store.put("pack0104", b"kept")
        # moto reports every upload as started on 2010-11-10 (real S3: the time it
        # began), so the cutoff that keeps it lies before that
        assert store.sweep_incomplete(older_than=EARLY) == 0
        assert self.uploads(store) == ["packs/pack0103.pack"]
        assert store.sweep_incomplete(older_than=time.time()) == 1
        assert self.uploads(store) == []
        assert [o.name for o in store.list()] == ["pack0104"]

    def test_list_stays_inside_the_prefix(self, store: S3BlockStore) -> None:
        store.put("pack0105", b"x")
        store.client.put_object(Bucket=store.location.bucket, Key="other/pack0106.pack", Body=b"y")
        store.client.put_object(Bucket=store.location.bucket, Key="packs/notes.txt", Body=b"z")
        assert [o.name for o in store.list()] == ["pack0105"]

    def test_a_range_past_the_end_is_empty(self, store: S3BlockStore) -> None:
        store.put("pack0107", b"abc")
        assert store.get("pack0107", 3) == b""
        assert store.get("pack0107", 1, 0) == b""
        with pytest.raises(PackNotFound):
            store.get("nosuchpack", 3)

    def test_bad_names_are_refused_before_any_request(self, store: S3BlockStore) -> None:
        with pytest.raises(InvalidArgument):
            store.put("../escape", b"x")


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [("s3://b1", "b1", ""), ("s3://b1/", "b1", ""), ("s3://b1/a/b/", "b1", "a/b/")],
)
def test_s3_location_parses_bucket_and_prefix(url: str, bucket: str, prefix: str) -> None:
    assert S3Location.parse(url) == S3Location(bucket, prefix)


@pytest.mark.parametrize("url", ["s3:///nobucket", "gs://b1/p", "s3://b1/p?x=1"])
def test_open_blockstore_refuses_other_urls(url: str) -> None:
    with pytest.raises(InvalidArgument):
        open_blockstore(url)


def test_s3_put_of_the_same_bytes_counts_as_its_own_retry(s3_bucket: str) -> None:
    store = open_blockstore(f"s3://{s3_bucket}")
    store.put("pack0200", b"landed")
    store.put("pack0200", b"landed")  # as a retry whose first attempt landed finds it
    with pytest.raises(FileExistsError):
        store.put("pack0200", b"landed, but other bytes")
    assert store.get("pack0200") == b"landed"


def test_open_blockstore_refuses_a_bucket_that_does_not_exist(s3_endpoint: str) -> None:
    with pytest.raises(InvalidArgument, match="a bucket that exists"):
        open_blockstore("s3://no-such-bucket-here/packs")
