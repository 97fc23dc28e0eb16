"""Run folders: atomic writes, refusing to clobber, resuming an unfinished run."""

import json

import pytest
import torch

from magnetdml.training.refresh import RefreshSchedule, drift
from magnetdml.training.run_dir import RunDir, atomic_write


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"good")

    def failing(handle):
        handle.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, failing)
    assert path.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_checkpoint_round_trip_and_history(tmp_path):
    run = RunDir.open(tmp_path / "run", {"a": 1})
    run.save_checkpoint({"w": torch.ones(3), "epoch": 2})
    assert run.load_checkpoint()["epoch"] == 2
    for epoch in (1, 2, 3):
        run.append_history({"epoch": epoch})
    run.truncate_history(2)
    assert [r["epoch"] for r in run.read_history()] == [1, 2]


def test_reopening_unfinished_run_needs_same_config_and_finished_run_is_protected(tmp_path):
    run = RunDir.open(tmp_path / "run", {"a": 1})
    RunDir.open(tmp_path / "run", {"a": 1})          # resume: fine
    # nothing trained yet (a run that failed to start): a corrected config takes over
    assert RunDir.open(tmp_path / "run", {"a": 3}).path == run.path
    run.save_checkpoint({"epoch": 1})
    with pytest.raises(ValueError, match="unfinished run with a different config"):
        RunDir.open(tmp_path / "run", {"a": 2})
    RunDir.open(tmp_path / "run", {"a": 3})          # its own config resumes
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"knc_error": 0.1}))
    with pytest.raises(ValueError, match="already holds a finished run.*--overwrite"):
        RunDir.open(tmp_path / "run", {"a": 1})
    RunDir.open(tmp_path / "run", {"a": 2}, overwrite=True)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_drift_is_scale_invariant_and_adaptive_schedule_fires_on_drift():
    g = torch.Generator().manual_seed(0)
    reference = torch.randn(100, 8, generator=g).numpy()
    moved = reference + 0.5 * torch.randn(100, 8, generator=g).numpy()
    assert drift(reference * 10, moved * 10) == pytest.approx(drift(reference, moved))
    schedule = RefreshSchedule(drift_threshold=0.1, check_every=5)
    schedule.refreshed(reference)
    assert not schedule.at_epoch_end and schedule.wants_probe(10)
    assert not schedule.due(10, reference + 1e-4)
    assert schedule.due(10, moved)
    fixed = RefreshSchedule(every_iterations=3)
    assert [i for i in range(1, 10) if fixed.due(i)] == [3, 6, 9]
    assert RefreshSchedule().at_epoch_end
