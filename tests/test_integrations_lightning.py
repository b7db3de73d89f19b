"""Lightning's checkpoints through the ckptstore CheckpointIO, with a real Trainer on CPU."""

from __future__ import annotations

import lightning
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from ckptstore.client import Client
from ckptstore.errors import CheckpointNotFound
from ckptstore.integrations.lightning import CkptStoreCheckpointIO
from tests.server_helpers import make_server

# Lightning's advice for real runs (more data-loader workers, a logger) is beside the point
# here; its data loading still builds torch's LeafSpec, which newer torch deprecates.
pytestmark = pytest.mark.filterwarnings(
    "ignore::lightning.fabric.utilities.warnings.PossibleUserWarning",
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*LeafSpec.* is deprecated:FutureWarning",
)


@pytest.fixture
def server_client(tmp_path):
    srv = make_server(tmp_path / "server")
    with srv.client:
        key = srv.acme["Authorization"].split()[1]
        with Client("http://testserver", key, http=srv.client) as client:
            yield client


class Tiny(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def loader() -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=gen)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=16)


def trainer(
    io: CkptStoreCheckpointIO, tmp_path, max_epochs: int, **checkpointing
) -> lightning.Trainer:
    return lightning.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        plugins=[io],
        callbacks=[
            ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val_loss", **checkpointing)
        ],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )


def test_fit_stores_each_save_with_epoch_step_and_the_monitored_metric(store, tmp_path):
    io = CkptStoreCheckpointIO(store, "job_pl", best_metric="val_loss")
    torch.manual_seed(0)
    model = Tiny()
    trainer(io, tmp_path, 3, save_top_k=-1).fit(model, loader(), loader())
    records = store.list("job_pl", order="asc", limit=None, types=("automatic",)).checkpoints
    assert [(r.epoch, r.step) for r in records] == [(0, 4), (1, 8), (2, 12)]
    assert [r.name for r in records] == [s.name for s in io.saved]
    assert records[0].name.startswith("epoch=0-step=4")
    assert all(set(r.metrics) == {"val_loss"} for r in records)
    # the job's best copy follows the monitored metric
    best = min(records, key=lambda r: r.metrics["val_loss"])
    assert store.job_summary("job_pl").best.parent_id == best.checkpoint_id
    # the last save holds the weights the model ended with
    last = io.load_checkpoint(records[-1].checkpoint_id)
    for key, value in model.state_dict().items():
        assert torch.equal(last["state_dict"][key], value)


def test_top_k_removal_and_a_path_saved_again_delete_the_stored_checkpoint(store, tmp_path):
    io = CkptStoreCheckpointIO(store, "job_pl")
    trainer(io, tmp_path, 3, save_top_k=1, save_last=True).fit(Tiny(), loader(), loader())
    kept = {
        r.checkpoint_id for r in store.list("job_pl", limit=None, types=("automatic",)).checkpoints
    }
    # one top-1 checkpoint and last.ckpt; every other save was removed or replaced
    assert len(io.saved) > 2 and len(kept) == 2
    assert kept == {io.checkpoint_id(p) for p in io._by_path}
    gone = [r.checkpoint_id for r in io.saved if r.checkpoint_id not in kept]
    with pytest.raises(CheckpointNotFound):
        store.get(gone[0])


def test_keep_replaced_leaves_removal_to_the_job_settings(store, tmp_path):
    io = CkptStoreCheckpointIO(store, "job_pl", keep_replaced=True)
    trainer(io, tmp_path, 2, save_top_k=1, save_last=True).fit(Tiny(), loader(), loader())
    stored = store.list("job_pl", limit=None, types=("automatic",)).total_count
    assert stored == len(io.saved)


def test_a_new_trainer_resumes_from_the_jobs_latest_through_a_server(server_client, tmp_path):
    io = CkptStoreCheckpointIO(server_client, "job_pl")
    torch.manual_seed(0)
    model = Tiny()
    trainer(io, tmp_path, 2, save_top_k=-1).fit(model, loader(), loader())
    checkpoint_id = io.saved[-1].checkpoint_id

    fresh_io = CkptStoreCheckpointIO(server_client, "job_pl")  # a new process knows the job
    torch.manual_seed(1)
    resumed = Tiny()
    again = trainer(fresh_io, tmp_path, 2, save_top_k=-1)
    again.fit(resumed, loader(), loader(), ckpt_path="job_pl:latest")
    # the run had ended: the resumed trainer restores the state and trains no further
    assert again.global_step == 8 and again.current_epoch == 2
    for key, value in model.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value)
    optimizer_state = again.optimizers[0].state_dict()["state"]
    saved = io.load_checkpoint(checkpoint_id)["optimizer_states"][0]["state"]
    for index, moments in saved.items():
        assert torch.equal(optimizer_state[index]["exp_avg"], moments["exp_avg"])


def test_storage_options_type_a_save(store, tmp_path):
    io = CkptStoreCheckpointIO(store, "job_pl")
    run = trainer(io, tmp_path, 1)
    run.fit(Tiny(), loader(), loader())
    run.save_checkpoint(tmp_path / "final.ckpt", storage_options={"type": "final"})
    assert store.get(io.checkpoint_id(tmp_path / "final.ckpt")).type == "final"
    with pytest.raises(ValueError, match="storage_options"):
        run.save_checkpoint(tmp_path / "x.ckpt", storage_options={"colour": "red"})
