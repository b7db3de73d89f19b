"""The ckptstore command on an embedded store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ckptstore import CheckpointStore
from ckptstore.cli.main import app
from ckptstore.formatting import human_size, iso_time
from tests.conftest import random_bytes

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"CKPTSTORE_STORE": str(tmp_path / "store")}


def run(env: dict[str, str], *args: str):
    return runner.invoke(app, list(args), env=env)


def test_push_ls_pull_round_trip(tmp_path, env):
    data = random_bytes(2_000_000, seed=1)
    src = tmp_path / "model.pt"
    src.write_bytes(data)
    pushed = run(
        env,
        "push",
        str(src),
        "--job",
        "job_cli",
        "--epoch",
        "2",
        "--metric",
        "loss=0.5",
        "--metric",
        "validationLoss=0.7",
        "--json",
    )
    assert pushed.exit_code == 0, pushed.output
    record = json.loads(pushed.output)
    assert record["epoch"] == 2 and record["metrics"] == {"loss": 0.5, "validationLoss": 0.7}

    listed = json.loads(run(env, "ls", "job_cli", "--sort-by", "step", "--json").output)
    assert listed["totalCount"] == 2  # the checkpoint and its best copy
    assert {c["type"] for c in listed["checkpoints"]} == {"automatic", "best"}
    assert record["checkpointId"] in {c["checkpointId"] for c in listed["checkpoints"]}

    out = tmp_path / "restored.bin"
    pulled = run(env, "pull", record["checkpointId"], "-o", str(out))
    assert pulled.exit_code == 0, pulled.output
    assert out.read_bytes() == data

    assert run(env, "verify", "--read-data").exit_code == 0
    assert json.loads(run(env, "stats", "--json").output)["checkpoints"] == 2
    assert json.loads(run(env, "jobs", "--json").output) == ["job_cli"]


def test_ls_without_metrics_omits_them(tmp_path, env):
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc")
    run(env, "push", str(src), "--job", "j", "--metric", "loss=1")
    listed = json.loads(run(env, "ls", "j", "--no-metrics", "--json").output)
    assert "metrics" not in listed["checkpoints"][0]


def test_rm_then_show_fails_with_not_found_exit_code(tmp_path, env):
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc")
    checkpoint_id = json.loads(run(env, "push", str(src), "--job", "j", "--json").output)[
        "checkpointId"
    ]
    assert run(env, "rm", checkpoint_id).exit_code == 0
    shown = run(env, "show", checkpoint_id)
    assert shown.exit_code == 3
    assert "not found" in shown.output and "Traceback" not in shown.output


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["ls", "bad job"], 2, "invalid jobId"),
        (["ls", "j", "--limit", "0"], 2, "invalid limit"),
        (["push", "/nonexistent/file", "--job", "j"], 1, "No such file"),
        (["push", "-", "--job", "j", "--metric", "loss"], 2, "KEY=NUMBER"),
        (["push", "-", "--job", "j", "--type", "weekly"], 2, "invalid type"),
    ],
)
def test_user_mistakes_get_one_line_and_exit_code(env, args, code, message):
    CheckpointStore.open(env["CKPTSTORE_STORE"]).close()  # the store exists; the input is wrong
    result = run(env, *args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_verify_exits_4_on_damage(tmp_path, env):
    src = tmp_path / "a.bin"
    src.write_bytes(random_bytes(300_000, seed=2))
    run(env, "push", str(src), "--job", "j")
    (pack,) = (tmp_path / "store" / "packs").glob("*/*.pack")
    raw = bytearray(pack.read_bytes())
    raw[-100] ^= 1
    pack.write_bytes(bytes(raw))
    result = run(env, "verify", "--read-data")
    assert result.exit_code == 4
    assert "corrupt_block" in result.output


def test_installed_command_runs_as_a_subprocess(tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 100_000)
    script = Path(sys.executable).parent / "ckptstore"
    store = str(tmp_path / "store")
    pushed = subprocess.run(
        [str(script), "push", str(src), "--job", "j", "--store", store, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    checkpoint_id = json.loads(pushed.stdout)["checkpointId"]
    pulled = subprocess.run(
        [str(script), "pull", checkpoint_id, "-o", "-", "--store", store],
        capture_output=True,
        check=True,
    )
    assert pulled.stdout == b"x" * 100_000


@pytest.mark.parametrize(
    "n, text",
    [(0, "0B"), (999, "999B"), (1000, "1.0KB"), (2_300_000_000, "2.3GB"), (27.6e9, "27.6GB")],
)
def test_human_size_uses_decimal_units(n, text):
    assert human_size(int(n)) == text


def test_iso_time_is_utc_with_z():
    assert iso_time(1705350600) == "2024-01-15T20:30:00Z"


def test_version_and_short_help_flags():
    from importlib.metadata import version

    runner = CliRunner()
    shown = runner.invoke(app, ["--version"])
    assert shown.exit_code == 0 and shown.output.strip() == f"ckptstore {version('ckptstore')}"
    for args in (["-h"], ["push", "-h"], ["keys", "create", "-h"]):
        helped = runner.invoke(app, args)
        assert helped.exit_code == 0 and "Usage:" in helped.output, args


def test_without_a_store_or_server_nothing_is_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = runner.invoke(app, ["ls", "job"], env={"CKPTSTORE_STORE": "", "CKPTSTORE_SERVER": ""})
    assert missing.exit_code == 2 and "--store PATH or --server URL" in missing.output
    absent = tmp_path / "absent"
    for args in (["ls", "job"], ["pull", "ckpt_0123456789abcdef0123", "-o", "x"], ["stats"]):
        read = runner.invoke(app, [*args, "--store", str(absent)])
        assert read.exit_code == 3 and "no store at" in read.output, args
    assert not absent.exists() and list(tmp_path.iterdir()) == []


def test_server_mistakes_are_named_before_any_request(monkeypatch):
    no_scheme = runner.invoke(app, ["jobs", "--server", "127.0.0.1:41731", "--api-key", "k"])
    assert no_scheme.exit_code == 2 and "http://" in no_scheme.output
    no_key = runner.invoke(
        app, ["jobs", "--server", "http://127.0.0.1:9"], env={"CKPTSTORE_API_KEY": ""}
    )
    assert no_key.exit_code == 8 and "CKPTSTORE_API_KEY" in no_key.output
    assert "--server" not in runner.invoke(app, ["verify", "-h"]).output
    from ckptstore.client import Client
    from ckptstore.errors import InvalidArgument

    monkeypatch.delenv("CKPTSTORE_SERVER", raising=False)
    with pytest.raises(InvalidArgument, match="CKPTSTORE_SERVER"):
        Client.from_env()


def test_pull_to_a_pipe_that_closes_early_is_not_an_error(tmp_path, env):
    src = tmp_path / "big.bin"
    src.write_bytes(random_bytes(3_000_000, seed=4))
    pushed = json.loads(run(env, "push", str(src), "--job", "j", "--json").output)
    bin_ = Path(sys.executable).parent / "ckptstore"
    done = subprocess.run(
        f"'{bin_}' pull {pushed['checkpointId']} -o - | head -c 10 > /dev/null;"
        " echo ${PIPESTATUS[0]}",
        shell=True,
        executable="/bin/bash",
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.strip() == "0" and "Broken pipe" not in done.stderr, done.stderr


def test_ls_shows_whole_ids_and_status_and_quiet_gives_ids_only(tmp_path, env):
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc")
    pushed = json.loads(run(env, "push", str(src), "--job", "j", "--json").output)
    pending = CheckpointStore.open(env["CKPTSTORE_STORE"])
    waiting = pending.create_pending("j").checkpoint_id
    pending.close()
    table = run(env, "ls", "j").output
    for checkpoint_id in (pushed["checkpointId"], waiting):
        assert checkpoint_id in table.replace("\n", "").replace(" ", "").replace("│", "")
    quiet = run(env, "ls", "j", "-q").output.split()
    assert sorted(quiet) == sorted([pushed["checkpointId"], waiting])
    shown = run(env, "show", pushed["checkpointId"]).output
    assert "description: \n" in shown and "metrics: {}" in shown and "None" not in shown
    listed = json.loads(run(env, "ls", "j", "--json").output)
    assert set(listed["checkpoints"][0]) >= {"checkpointId", "jobId", "createdAt", "sizeBytes"}
    assert sorted(c["status"] for c in listed["checkpoints"]) == ["pending", "ready"]
    wide = runner.invoke(app, ["ls", "j"], env={**env, "COLUMNS": "200"}).output
    assert "pending" in wide and "ready" in wide


def test_settings_show_and_set_and_ls_by_type(tmp_path, env):
    src = tmp_path / "a.bin"
    for epoch, loss in ((1, 0.9), (2, 0.5)):
        src.write_bytes(bytes([epoch]) * 100)
        metric = f"validationLoss={loss}"
        run(env, "push", str(src), "--job", "j", "--epoch", str(epoch), "--metric", metric)
    shown = json.loads(run(env, "settings", "show", "j", "--json").output)
    assert shown == {"bestMetric": "validationLoss", "bestMode": "min", "keepAutomatic": None}
    changed = run(env, "settings", "set", "j", "--best-metric", "accuracy", "--keep-automatic", "3")
    assert changed.exit_code == 0 and "keepAutomatic: 3" in changed.output
    shown = json.loads(run(env, "settings", "show", "j", "--json").output)
    assert shown == {"bestMetric": "accuracy", "bestMode": "max", "keepAutomatic": 3}
    bad = run(env, "settings", "set", "j", "--best-mode", "sideways")
    assert bad.exit_code == 2 and "bestMode" in bad.output
    best = json.loads(run(env, "ls", "j", "--type", "best", "--json").output)["checkpoints"]
    assert [c["epoch"] for c in best] == [2]
    removed = json.loads(run(env, "rm", best[0]["checkpointId"], "--json").output)
    assert [c["checkpointId"] for c in removed["deleted"]] == [best[0]["checkpointId"]]


def test_commands_take_prefixes_and_aliases(tmp_path, env, monkeypatch):
    with CheckpointStore.open(env["CKPTSTORE_STORE"]) as store:
        store.put("j", b"first" * 100, checkpoint_id="ckpt_aaaa1111")
        store.put("j", b"second" * 100, checkpoint_id="ckpt_aaaa2222")
        store.put("j", b"final" * 100, checkpoint_id="ckpt_bbbb0001", type="final")
    shown = json.loads(run(env, "show", "ckpt_aaaa1", "--json").output)
    assert shown["checkpointId"] == "ckpt_aaaa1111"
    ambiguous = run(env, "show", "ckpt_aaaa")
    assert ambiguous.exit_code == 13, ambiguous.output
    assert "ckpt_aaaa1111, ckpt_aaaa2222" in ambiguous.output
    assert "ckpt_bbbb" not in ambiguous.output and "Traceback" not in ambiguous.output
    assert run(env, "show", "j:newest").exit_code == 2
    assert run(env, "show", "nojob:latest").exit_code == 3
    monkeypatch.chdir(tmp_path)
    pulled = run(env, "pull", "j:final")
    assert pulled.exit_code == 0, pulled.output
    # saved under the id the alias named, not the alias
    assert (tmp_path / "ckpt_bbbb0001.ckpt").read_bytes() == b"final" * 100
    removed = run(env, "rm", "ckpt_bbbb0")
    assert removed.exit_code == 0 and "deleted ckpt_bbbb0001" in removed.output
    assert json.loads(run(env, "show", "j:latest", "--json").output)["checkpointId"] == (
        "ckpt_aaaa2222"
    )


def test_endpoints_set_re_points_and_names_are_unique(env):
    with CheckpointStore.open(env["CKPTSTORE_STORE"]) as store:
        store.put("j", b"first" * 100, checkpoint_id="ckpt_aaaa0001")
    deployed = json.loads(
        run(env, "endpoints", "deploy", "j:latest", "--name", "e", "--json").output
    )
    assert deployed["checkpoint_id"] == "ckpt_aaaa0001"
    clash = run(env, "endpoints", "deploy", "j:latest", "--name", "e")
    assert clash.exit_code == 7 and "named 'e'" in clash.output
    with CheckpointStore.open(env["CKPTSTORE_STORE"]) as store:
        store.put("j", b"second" * 100, checkpoint_id="ckpt_aaaa0002")
    moved = run(env, "endpoints", "set", deployed["endpoint_id"], "--checkpoint", "j:latest")
    assert moved.exit_code == 0, moved.output
    assert f"{deployed['endpoint_id']} -> ckpt_aaaa0002" in moved.output
    assert run(env, "rm", "ckpt_aaaa0001").exit_code == 0  # no longer pinned
    assert run(env, "rm", "ckpt_aaaa0002").exit_code == 7


def test_gc_grace_reclaims_at_once(tmp_path, env):
    src = tmp_path / "a.bin"
    src.write_bytes(random_bytes(300_000, seed=4))
    pushed = json.loads(run(env, "push", str(src), "--job", "j", "--json").output)
    run(env, "rm", pushed["checkpointId"])
    kept = json.loads(run(env, "gc", "--json").output)
    assert kept["blocks_removed"] == 0  # inside the default grace period
    freed = json.loads(run(env, "gc", "--grace", "0", "--json").output)
    assert freed["blocks_removed"] > 0
    refused = run(env, "gc", "--grace", "-1")
    assert refused.exit_code == 2 and "grace" in refused.output


def sample_folder(root: Path) -> Path:
    """A folder as a Hugging Face Trainer writes one, with an empty file and modes."""
    files = {
        "model-00001-of-00002.safetensors": random_bytes(700_000, seed=2),
        "model-00002-of-00002.safetensors": random_bytes(300_000, seed=3),
        "model.safetensors.index.json": b'{"weight_map": {}}',
        "optimizer.pt": random_bytes(200_000, seed=4),
        "rng_state.pth": b"",
        "sub/dir/trainer_state.json": b"{}",
    }
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    (root / "optimizer.pt").chmod(0o600)
    return root


def test_push_folder_then_pull_it_back_byte_exact(tmp_path, env):
    src = sample_folder(tmp_path / "ckdir")
    pushed = run(env, "push", str(src), "--job", "job_dir", "--json")
    assert pushed.exit_code == 0, pushed.output
    record = json.loads(pushed.output)
    assert record["layout"] == "tree" and len(record["sha256"]) == 64
    out = tmp_path / "restored"
    pulled = run(env, "pull", record["checkpointId"], "-o", str(out))
    assert pulled.exit_code == 0, pulled.output
    assert subprocess.run(["diff", "-r", str(src), str(out)]).returncode == 0
    assert (out / "optimizer.pt").stat().st_mode & 0o777 == 0o600
    # ls-files --sha256sum: what `sha256sum -c` checks in the folder
    sums = run(env, "ls-files", record["checkpointId"], "--sha256sum")
    assert sums.exit_code == 0, sums.output
    (tmp_path / "SUMS").write_text(sums.output)
    checked = subprocess.run(["sha256sum", "-c", str(tmp_path / "SUMS")], cwd=out)
    assert checked.returncode == 0
    listed = json.loads(run(env, "ls-files", record["checkpointId"], "--json").output)
    assert [f["path"] for f in listed["files"]][-1] == "sub/dir/trainer_state.json"


def test_pull_of_a_single_file_keeps_its_name(tmp_path, env, monkeypatch):
    src = tmp_path / "weights.npy"
    src.write_bytes(b"numpy" * 1000)
    record = json.loads(run(env, "push", str(src), "--job", "j", "--json").output)
    monkeypatch.chdir(tmp_path / "store")
    pulled = run(env, "pull", record["checkpointId"])
    assert pulled.exit_code == 0, pulled.output
    assert (tmp_path / "store" / "weights.npy").read_bytes() == src.read_bytes()
