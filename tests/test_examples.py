"""The local quickstart example runs as the README says, and writes only where told."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "quickstart.py"


def test_quickstart_runs_in_a_directory_of_its_own(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("saved ckpt_") == 3 and "3 saves;" in out  # the best copy is not a save
    assert "bit-exact: True" in out and "verify: ok" in out
    assert list(cwd.iterdir()) == []  # nothing left where it ran (no ./data)


def test_quickstart_keeps_a_store_it_is_given(tmp_path):
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path / "ckpts")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ckpts" / "catalog.sqlite").exists()
