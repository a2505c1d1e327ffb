"""torch's threads follow the cores other processes leave free, and MERGEKIT_EVO_THREADS overrides them."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from helpers import assert_one_line_error, cli_here
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.threads import CoreWatch, Look, apply_process_defaults, threads_for


@pytest.mark.parametrize(
    ("others", "cores", "most", "expected"),
    [
        (0.0, 2, 2, 2),  # an idle machine: torch's own choice
        (0.3, 2, 2, 2),  # a core busy less than a third of the time is still free
        (0.4, 2, 2, 1),
        (1.0, 2, 2, 1),  # a neighbour holding one of two cores
        (3.0, 2, 2, 1),  # never fewer than one
        (0.5, 16, 8, 8),  # never more than torch's own choice (OMP_NUM_THREADS, Ray's num_cpus)
        (6.0, 16, 16, 10),
    ],
)
def test_threads_are_the_cores_left_free(others, cores, most, expected):
    assert threads_for(others, cores, most) == expected


def test_the_watch_counts_what_other_processes_used_since_its_last_look(monkeypatch):
    monkeypatch.delenv("MERGEKIT_EVO_THREADS", raising=False)
    most = torch.get_num_threads()
    looks = iter(
        [
            Look(wall=0.0, busy=0.0, own=0.0),
            Look(wall=1.0, busy=1.5, own=0.5),  # the machine used 1.5 core-seconds, this process 0.5: one core taken
            Look(wall=2.0, busy=2.5, own=1.5),  # all of it this process's own: nothing taken
        ]
    )
    try:
        watch = CoreWatch(look=lambda: next(looks))
        watch.cores, watch.most = 2, 2
        assert watch.fit() == 1 and torch.get_num_threads() == 1
        assert watch.fit() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(most)


def test_a_process_holding_a_core_takes_a_thread_away(monkeypatch):
    monkeypatch.delenv("MERGEKIT_EVO_THREADS", raising=False)
    most = torch.get_num_threads()
    torch.set_num_threads(2)  # as torch chooses on 2 free cores (a parallel test worker computes on one thread)
    watch = CoreWatch()
    if watch.most < 2 or watch.cores < 2:
        pytest.fail("this test needs 2 cores")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        watch.fit()  # the span since the watch began, partly before the neighbour ran
        time.sleep(0.5)
        beside = watch.fit()  # other load on the machine can only take more
    finally:
        spinner.kill()
        spinner.wait()
        torch.set_num_threads(most)
    assert beside <= watch.most - 1


def test_the_environment_fixes_the_threads_or_leaves_torch_s_choice(monkeypatch):
    most = torch.get_num_threads()
    try:
        monkeypatch.setenv("MERGEKIT_EVO_THREADS", "1")
        assert CoreWatch().fit() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("MERGEKIT_EVO_THREADS", "torch")
        torch.set_num_threads(most)
        assert CoreWatch().fit() == most
        monkeypatch.setenv("MERGEKIT_EVO_THREADS", "many")
        with pytest.raises(UserError, match="MERGEKIT_EVO_THREADS"):
            apply_process_defaults()
    finally:
        torch.set_num_threads(most)


def test_a_bad_thread_setting_is_one_line_from_the_cli(monkeypatch):
    monkeypatch.setenv("MERGEKIT_EVO_THREADS", "0")
    assert_one_line_error(cli_here("plugins"), "MERGEKIT_EVO_THREADS", "number of threads")
