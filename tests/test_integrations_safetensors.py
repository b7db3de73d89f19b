"""Tensors of a stored safetensors file, loaded without fetching the rest of the file."""

from __future__ import annotations

import numpy as np
import pytest
import safetensors.torch
import torch

import ckptstore.client.reader
import ckptstore.store.restore
from ckptstore.client import Client
from ckptstore.errors import InvalidArgument
from ckptstore.integrations import safetensors as st
from tests.server_helpers import make_server

TENSOR_ELEMENTS = 64 * 1024  # 256 KiB as float32


def tensors() -> dict[str, torch.Tensor]:
    """A file of several dtypes, large enough to span many blocks."""
    gen = torch.Generator().manual_seed(0)
    out = {
        f"layers.{i}.weight": torch.randn(TENSOR_ELEMENTS // 256, 256, generator=gen)
        for i in range(12)
    }
    out["embed.bf16"] = torch.randn(1000, 64, generator=gen).to(torch.bfloat16)
    out["positions"] = torch.arange(5000, dtype=torch.int64)
    out["scalar"] = torch.tensor(3.5, dtype=torch.float16)
    return out


def file_bytes() -> bytes:
    return safetensors.torch.save(tensors(), metadata={"format": "pt"})


@pytest.fixture
def server(tmp_path):
    srv = make_server(tmp_path)
    with srv.client:
        key = srv.acme["Authorization"].split()[1]
        with Client("http://testserver", key, http=srv.client) as client:
            yield srv, client


def assert_equal(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def test_load_tensor_from_an_embedded_store_decodes_only_the_blocks_under_it(store, monkeypatch):
    assert store.context.config.readahead_bytes > len(file_bytes())  # would decode it all
    data = file_bytes()
    record = store.put("job_st", data)
    decoded = []
    load_each = ckptstore.store.restore.load_each

    def counting(ctx, records):
        decoded.extend(r.raw_len for r in records)
        return load_each(ctx, records)

    monkeypatch.setattr(ckptstore.store.restore, "load_each", counting)
    name = "layers.7.weight"
    tensor = st.load_tensor(store, record.checkpoint_id, name)
    assert_equal(tensor, tensors()[name])
    # the header's block(s) and those under the tensor; a block may straddle its ends
    assert sum(decoded) < 3 * tensor.nbytes < len(data) / 3


def test_load_tensor_through_a_server_asks_only_for_the_header_and_its_range(server):
    srv, client = server
    record = client.put("job_st", file_bytes())
    fetched: list[int] = []

    def count(response) -> None:
        if response.request.method == "GET" and "range" in response.request.headers:
            fetched.append(int(response.headers["content-length"]))

    srv.client.event_hooks["response"].append(count)
    name = "embed.bf16"
    tensor = st.load_tensor(client, record.checkpoint_id, name)
    assert_equal(tensor, tensors()[name])
    # the length prefix's request brings the JSON header too; then the tensor's range
    assert len(fetched) == 2
    assert sum(fetched) <= ckptstore.client.reader.FIRST_CHUNK_BYTES + tensor.nbytes


@pytest.mark.parametrize("where", ["store", "server"])
def test_load_file_whole_and_by_name_equals_what_was_saved(where, store, server):
    target = store if where == "store" else server[1]
    record = target.put("job_st", file_bytes())
    expected = tensors()
    whole = st.load_file(target, record.checkpoint_id)
    assert whole.keys() == expected.keys()
    for name, tensor in expected.items():
        assert_equal(whole[name], tensor)
    some = st.load_file(target, record.checkpoint_id, names=["scalar", "positions"])
    assert list(some) == ["positions", "scalar"]  # in file order
    assert_equal(some["scalar"], expected["scalar"])
    assert sorted(st.tensor_names(target, record.checkpoint_id)) == sorted(expected)


def test_load_tensor_as_numpy(store):
    record = store.put("job_st", file_bytes())
    array = st.load_tensor(store, record.checkpoint_id, "positions", framework="numpy")
    assert isinstance(array, np.ndarray) and array.dtype == np.int64
    assert (array == np.arange(5000)).all()


def test_load_tensor_names_a_missing_tensor(store):
    record = store.put("job_st", file_bytes())
    with pytest.raises(InvalidArgument, match="no.such") as info:
        st.load_tensor(store, record.checkpoint_id, "no.such")
    assert info.value.parameter == "name"


@pytest.mark.parametrize(
    "data",
    [b"abc", (2**40).to_bytes(8, "little") + b"{}", (4).to_bytes(8, "little") + b"{{{{"],
    ids=["short", "huge-header", "not-json"],
)
def test_load_tensor_refuses_a_file_that_is_not_safetensors(store, data):
    record = store.put("job_st", data)
    with pytest.raises(InvalidArgument, match="a safetensors file") as info:
        st.load_tensor(store, record.checkpoint_id, "x")
    assert info.value.parameter == "checkpoint"


@pytest.mark.parametrize("where", ["store", "server"])
def test_load_tensor_from_a_file_of_a_folder_checkpoint(where, store, server, tmp_path):
    target = store if where == "store" else server[1]
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden": 256}')
    (folder / "model.safetensors").write_bytes(file_bytes())
    record = target.put("job_st", folder)
    tensor = st.load_tensor(target, record.checkpoint_id, "positions", path="model.safetensors")
    assert_equal(tensor, tensors()["positions"])
    names = st.tensor_names(target, record.checkpoint_id, path="model.safetensors")
    assert sorted(names) == sorted(tensors())
