"""torch's threads follow the cores other processes leave free, and MERGEKIT_EVO_THREADS overrides them."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from helpers import assert_one_line_error, cli_here
from mergekit_evo.errors import UserError
from mergekit_evo.threads import CoreWatch, apply_process_defaults, threads_for


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


def test_a_busy_neighbour_takes_a_thread_away_and_gives_it_back_when_it_stops():
    watch = CoreWatch()
    if watch.fixed is not None or watch.most < 2 or watch.cores < 2:
        pytest.fail("this test needs 2 cores and MERGEKIT_EVO_THREADS unset")
    try:
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        watch.fit()  # the span since the watch began, partly before the neighbour ran
        time.sleep(0.5)
        beside = watch.fit()
    finally:
        spinner.kill()
        spinner.wait()
    assert beside <= watch.most - 1 and torch.get_num_threads() == beside
    time.sleep(0.5)
    alone = watch.fit()
    assert alone > beside and torch.get_num_threads() == alone


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
