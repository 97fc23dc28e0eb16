"""The train.threads default and the oversubscription warning."""

import pytest

from magnetdml.training import machine


@pytest.mark.parametrize(
    ("cores", "processes", "expected"),
    [(1, 1, 1), (2, 1, 1), (16, 1, 15), (2, 2, 1), (16, 4, 4), (3, 8, 1)],
)
def test_default_leaves_one_core_or_shares_them(cores, processes, expected):
    assert machine.default_threads(cores, processes) == expected


def test_zero_resolves_to_the_default_and_a_count_is_kept(monkeypatch):
    monkeypatch.setattr(machine, "available_cores", lambda: 8)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert machine.resolve_threads(0) == 7 and machine.resolve_threads(3) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun: two processes
    assert machine.resolve_threads(0) == 4


def test_warns_in_one_line_when_threads_exceed_the_idle_cores():
    assert machine.oversubscription(1, cores=2, load=9.0) is None  # nothing to lower
    assert machine.oversubscription(2, cores=2, load=0.1) is None  # an idle machine
    assert machine.oversubscription(4, cores=16, load=3.0) is None
    busy = machine.oversubscription(2, cores=2, load=3.5)
    assert busy.count("\n") == 0
    assert "train.threads 2 oversubscribes this machine (2 cores, load average 3.5)" in busy
    assert busy.endswith("--train.threads 1 avoids it")
    many = machine.oversubscription(4, cores=8, load=0.0, processes=4)
    assert "train.threads 4 x 4 processes" in many and many.endswith("--train.threads 2 avoids it")
