"""Run folders: atomic writes, refusing to clobber, resuming an unfinished run."""

import json

import pytest
import torch

from magnetdml.training.atomic_files import atomic_write
from magnetdml.training.refresh import RefreshSchedule, drift
from magnetdml.training.run_dir import RunDir


def opened(path, config, **options) -> RunDir:
    """``RunDir.open`` then ``close``: the folder's lock freed (a train process holds it while it
    runs), the files still usable."""
    run = RunDir.open(path, config, **options)
    run.close()
    return run


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
    run = opened(tmp_path / "run", {"a": 1})
    run.save_checkpoint({"w": torch.ones(3), "epoch": 2})
    assert run.load_checkpoint()["epoch"] == 2
    for epoch in (1, 2, 3):
        run.append_history({"epoch": epoch})
    run.truncate_history(2)
    assert [r["epoch"] for r in run.read_history()] == [1, 2]


def test_reopening_unfinished_run_needs_same_config_and_finished_run_is_protected(tmp_path):
    run = opened(tmp_path / "run", {"a": 1})
    opened(tmp_path / "run", {"a": 1})  # resume: fine
    # nothing trained yet (a run that failed to start): a corrected config takes over
    assert opened(tmp_path / "run", {"a": 3}).path == run.path
    run.save_checkpoint({"epoch": 1})
    with pytest.raises(ValueError, match="unfinished run with a different config"):
        opened(tmp_path / "run", {"a": 2})
    opened(tmp_path / "run", {"a": 3})  # its own config resumes
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"knc_error": 0.1}))
    with pytest.raises(ValueError, match="already holds a finished run.*--overwrite"):
        opened(tmp_path / "run", {"a": 1})
    new = opened(tmp_path / "run", {"a": 2}, overwrite=True)
    # built beside the old run, which stays whole until the new one has its first checkpoint
    assert (tmp_path / "run" / "metrics.json").exists() and new.path != tmp_path / "run"
    new.save_checkpoint({"epoch": 1})
    assert new.path == tmp_path / "run" and not (tmp_path / "run" / "metrics.json").exists()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["a"] == 2
    new.close()  # the end of the run: the staging name (a link until then) goes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


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


def test_a_torn_last_history_line_is_dropped_and_a_bad_middle_line_named(tmp_path):
    run = opened(tmp_path / "run", {"a": 1})
    run.save_checkpoint({"epoch": 2})
    for epoch in (1, 2):
        run.append_history({"epoch": epoch})
    with open(run.path / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 3, "lo')  # killed while appending
    assert [r["epoch"] for r in run.read_history()] == [1, 2]
    run.truncate_history(2)  # what a resume does: it works
    assert [r["epoch"] for r in run.read_history()] == [1, 2]
    (run.path / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n{"epoch": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl' line 2 is not JSON"):
        run.read_history()


def test_opening_cleans_what_a_kill_left(tmp_path):
    run = opened(tmp_path / "run", {"a": 1})
    run.append_history({"epoch": 1})  # killed before the first checkpoint
    (run.path / ".checkpoint.pt.abc.tmp").write_bytes(b"half")
    opened(tmp_path / "run", {"a": 1})
    assert run.read_history() == [] and not list(run.path.glob(".*.tmp"))
    run.save_checkpoint({"epoch": 1})
    run.append_history({"epoch": 1})
    opened(tmp_path / "run", {"a": 1})  # with a checkpoint the history stays
    assert [r["epoch"] for r in run.read_history()] == [1]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        opened(tmp_path / "file", {"a": 1})
    with pytest.raises(ValueError, match="is a file, not a folder"):
        opened(tmp_path / "file", {"a": 1}, overwrite=True)


def test_run_files_are_readable_by_others_as_the_umask_allows(tmp_path):
    import os
    import stat

    from magnetdml.training.atomic_files import FILE_MODE

    run = opened(tmp_path / "run", {"a": 1})
    run.save_checkpoint({"epoch": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert FILE_MODE == 0o666 & ~mask  # as open() would create them, not 0600
    for name in ("config.json", "checkpoint.pt"):
        assert stat.S_IMODE(os.stat(run.path / name).st_mode) == FILE_MODE


def test_an_unfinished_run_written_before_a_field_existed_resumes(tmp_path):
    """A newer magnetdml resumes an older unfinished run: its config.json lacks the fields
    added since (here the loss's options and parameter_lr), which count at their defaults."""
    from dataclasses import asdict

    from magnetdml.training.config import Config
    from magnetdml.training.run_dir import CHECKPOINT, CONFIG, RunDir

    config = asdict(Config())
    RunDir.open(tmp_path / "run", config)
    (tmp_path / "run" / CHECKPOINT).write_bytes(b"x")  # something was trained
    saved = json.loads((tmp_path / "run" / CONFIG).read_text())
    del saved["loss"]["options"], saved["loss"]["parameter_lr"]
    (tmp_path / "run" / CONFIG).write_text(json.dumps(saved))
    RunDir.open(tmp_path / "run", config)  # resumes: no error
    other = {**config, "loss": {**config["loss"], "alpha": 3.0}}
    with pytest.raises(ValueError, match="holds an unfinished run with a different config"):
        RunDir.open(tmp_path / "run", other)
