"""Random sequences of put / delete / gc / reopen against a dict model."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from ckptstore import CheckpointStore
from ckptstore.testing.clock import FakeClock
from tests.conftest import TEST_CONFIG, random_bytes

BASES = [random_bytes(700_000, seed=s) for s in range(3)]


class StoreModel(RuleBasedStateMachine):
    checkpoints = Bundle("checkpoints")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ckpt-sm-"))
        self.clock = FakeClock()
        self.store = CheckpointStore.open(self.dir, config=TEST_CONFIG, clock=self.clock)
        self.model: dict[str, bytes] = {}

    @rule(
        target=checkpoints,
        base=st.integers(0, len(BASES) - 1),
        cut=st.integers(0, 700_000),
        insert=st.binary(max_size=300),
        repeat=st.integers(1, 2),
    )
    def put(self, base: int, cut: int, insert: bytes, repeat: int) -> str:
        data = (BASES[base][:cut] + insert + BASES[base][cut:]) * repeat
        record = self.store.put("job", data)
        self.model[record.checkpoint_id] = data
        return record.checkpoint_id

    @rule(checkpoint_id=checkpoints)
    def delete(self, checkpoint_id: str) -> None:
        if checkpoint_id in self.model:
            self.store.delete(checkpoint_id)
            del self.model[checkpoint_id]

    @rule(past_grace=st.booleans())
    def gc(self, past_grace: bool) -> None:
        self.clock.advance(TEST_CONFIG.gc_grace_s + 1 if past_grace else 1)
        self.store.gc()

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = CheckpointStore.open(self.dir, config=TEST_CONFIG, clock=self.clock)

    @invariant()
    def every_checkpoint_restores(self) -> None:
        assert self.store.list("job", limit=None).total_count == len(self.model)
        for checkpoint_id, data in self.model.items():
            with self.store.open_reader(checkpoint_id) as reader:
                assert reader.read() == data

    def teardown(self) -> None:
        report = self.store.verify(read_data=True)
        self.store.close()
        shutil.rmtree(self.dir)
        assert report.ok, report.findings


TestStoreModel = StoreModel.TestCase
TestStoreModel.settings = settings(max_examples=40, stateful_step_count=15, deadline=None)
