"""The run store's guarantees: nothing recorded is lost or rewritten, one writer per run, a run knows its inputs.

Each test reproduces a probe of issue 14: a damaged middle line, a record of another version, two processes on one
run, an edited config or item file, a damaged checkpoint, a full disk, a read-only folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from helpers import (
    BIN,
    assert_one_line_error,
    can_mount,
    cli,
    designed_record,
    fill_disk,
    read_only,
    small_disk,
    write_config,
)
from mergekit_evo.config import parse_config
from mergekit_evo.demo.configs import two_skill_config
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.run.evolution import Evolution
from mergekit_evo.store.files import read_jsonl
from mergekit_evo.store.runs import CandidateRecord, RunStore
from mergekit_evo.testing import interrupted_copy

EVALUATIONS, POPULATION = 8, 4


_record = designed_record


def _store_with(tmp_path: Path, records: list[CandidateRecord]) -> tuple[RunStore, list[str]]:
    logged: list[str] = []
    store = RunStore(tmp_path / "run", log=logged.append)
    store.path.mkdir()
    store.candidates_path.write_text("".join(json.dumps(r.to_row()) + "\n" for r in records))
    return store, logged


def _damage_line(path: Path, number: int) -> None:
    """Overwrite one character near the middle of line `number` (1-based), as a bad sector or a careless edit would:
    the colon after a key nearest the middle, so the line can never still parse (a character inside a string could
    leave valid JSON with another value)."""
    lines = path.read_bytes().split(b"\n")
    line = bytearray(lines[number - 1])
    colons = [i + 1 for i in range(len(line) - 2) if line[i : i + 3] == b'": ']
    line[min(colons, key=lambda i: abs(i - len(line) // 2))] = ord("#")
    lines[number - 1] = bytes(line)
    path.write_bytes(b"\n".join(lines))


# ------------------------------------------------------------------------------------------ reading and appending


def test_a_reader_never_writes_not_even_to_cut_a_torn_tail(tmp_path):
    store, _ = _store_with(tmp_path, [_record(0), _record(1)])
    with store.candidates_path.open("a") as f:
        f.write('{"index": 2, "gen')  # a live run mid-append, or a kill mid-write
    before = store.candidates_path.read_bytes()
    read = store.read_records()
    assert [r.index for r in read.rows] == [0, 1] and read.torn_bytes == len('{"index": 2, "gen')
    assert store.candidates_path.read_bytes() == before


def test_an_unreadable_middle_line_is_reported_once_skipped_and_kept_and_the_lines_after_it_are_read(tmp_path):
    store, logged = _store_with(tmp_path, [_record(i) for i in range(5)])
    _damage_line(store.candidates_path, 2)
    before = store.candidates_path.read_bytes()
    assert [r.index for r in store.records()] == [0, 2, 3, 4]
    assert [r.index for r in store.records()] == [0, 2, 3, 4]
    assert len(logged) == 1 and logged[0].startswith("candidates.jsonl:2: skipped a line") and "stays" in logged[0]
    store.lock()  # the writer too keeps a complete line it cannot read
    store.append(_record(store.next_index()))
    assert store.candidates_path.read_bytes().startswith(before)
    assert [r.index for r in store.records()] == [0, 2, 3, 4, 5]


def test_records_of_another_version_are_read_with_unknown_keys_ignored_and_optional_ones_defaulted(tmp_path):
    store, _ = _store_with(tmp_path, [])
    newer = {**_record(0).to_row(), "format": 7, "pareto_rank": 1, "energy_joules": 3.5}
    older = {k: v for k, v in _record(1).to_row().items() if k not in ("format", "device", "seconds", "cached_from")}
    no_seed = {k: v for k, v in _record(2).to_row().items() if k != "seed"}
    store.candidates_path.write_text("".join(json.dumps(row) + "\n" for row in (newer, older, no_seed)))
    logged: list[str] = []
    records = RunStore(store.path, log=logged.append).records()
    assert [r.index for r in records] == [0, 1]
    assert records[0] == _record(0) and records[1].device == "cpu" and records[1].seconds == 0.0
    assert len(logged) == 1 and "candidates.jsonl:3" in logged[0] and "missing seed" in logged[0]


def test_the_writer_cuts_only_a_torn_tail_and_only_when_it_takes_the_lock(tmp_path):
    store, logged = _store_with(tmp_path, [_record(0), _record(1)])
    complete = store.candidates_path.read_bytes()
    torn = b'{"index": 2, "generation": 0, "mem'
    with store.candidates_path.open("ab") as f:
        f.write(torn)
    assert store.candidates_path.read_bytes() == complete + torn  # reading cut nothing
    store.lock()
    assert store.candidates_path.read_bytes() == complete
    assert any(f"cut {len(torn)} bytes" in line for line in logged)
    store.append(_record(2))
    assert [r.index for r in store.records()] == [0, 1, 2]


def test_new_indices_stay_unique_past_lines_that_cannot_be_read(tmp_path):
    store, _ = _store_with(tmp_path, [_record(i) for i in range(4)])
    _damage_line(store.candidates_path, 4)  # the record with the highest index is the unreadable one
    assert max(r.index for r in store.records()) == 2
    assert store.next_index() == 4


def test_read_jsonl_keeps_rows_that_a_parser_rejects_out_of_the_result_but_counts_their_lines(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"key": "a"}\n{"n": 1}\nnot json\n{"key": "d"}\n')
    read = read_jsonl(path, lambda row: row["key"])
    assert read.rows == ["a", "d"] and read.lines == 4
    assert [bad.number for bad in read.bad] == [2, 3]


# ------------------------------------------------------------------------------------------ one writer


def test_a_second_writer_is_refused_naming_the_first_ones_pid_until_the_first_lets_go(tmp_path):
    first, _ = _store_with(tmp_path, [_record(0)])
    first.lock()
    second = RunStore(first.path)
    with pytest.raises(UserError) as refused:
        second.lock()
    assert f"pid {os.getpid()}" in str(refused.value) and "in use" in str(refused.value)
    first.unlock()
    second.lock()
    second.append(_record(1))
    assert len(second.records()) == 2


def test_writing_without_the_lock_is_refused_as_a_bug(tmp_path):
    store, _ = _store_with(tmp_path, [_record(0)])
    with pytest.raises(RuntimeError, match="without holding its lock"):
        store.append(_record(1))
    assert len(store.records()) == 1


# ------------------------------------------------------------------------------------------ whole runs


@pytest.fixture(scope="module")
def small_run(micro_world, tmp_path_factory):
    """A finished run of the demo's config (random search, 8 candidates in 2 generations), copied by each test."""
    run_dir = tmp_path_factory.mktemp("small") / "run"
    data = two_skill_config(micro_world, EVALUATIONS, population=POPULATION)
    return Evolution.start(parse_config(data, micro_world), run_dir, log=lambda _: None).run(progress=False)


def _copy(run, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run.run_dir, copy)
    return copy


def test_best_on_a_run_with_a_damaged_middle_line_prints_the_true_best_and_changes_no_byte(small_run, tmp_path):
    copy = _copy(small_run, tmp_path)
    damaged = next(r.index for r in small_run.records if r.index != small_run.best.index and r.index > 0)
    _damage_line(copy / RunStore.CANDIDATES, damaged + 1)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    result = cli("best", str(copy))
    assert result.returncode == 0, result.stderr
    assert f"# candidate {small_run.best.index}," in result.stdout
    assert f"candidates.jsonl:{damaged + 1}: skipped" in result.stderr
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before


def test_resume_after_a_damaged_line_keeps_every_line_and_scores_again_only_the_member_it_lost(small_run, tmp_path):
    copy = interrupted_copy(small_run.run_dir, tmp_path / "killed", keep=6)  # generation 1 half done
    _damage_line(copy / RunStore.CANDIDATES, 6)  # generation 1, member 1
    before = (copy / RunStore.CANDIDATES).read_bytes()
    logged: list[str] = []
    resumed = Evolution.resume(copy, log=logged.append).run(progress=False)
    after = (copy / RunStore.CANDIDATES).read_bytes()
    assert after.startswith(before) and after.count(b"\n") == EVALUATIONS + 1
    original = {(r.generation, r.member): r for r in small_run.records}
    assert {(r.generation, r.member): (r.genome, r.fitness) for r in resumed.records} == {
        key: (r.genome, r.fitness) for key, r in original.items()
    }
    assert next(r.index for r in resumed.records if (r.generation, r.member) == (1, 1)) == 6
    assert len({r.index for r in resumed.records}) == len(resumed.records) == EVALUATIONS
    assert sum("candidates.jsonl:6: skipped" in line for line in logged) == 1


def test_a_damaged_line_counts_against_the_budget_so_a_finished_run_stays_finished(small_run, tmp_path):
    copy = _copy(small_run, tmp_path)
    _damage_line(copy / RunStore.CANDIDATES, 3)
    before = (copy / RunStore.CANDIDATES).read_bytes()
    resumed = Evolution.resume(copy, log=lambda _: None).run(progress=False)
    assert (copy / RunStore.CANDIDATES).read_bytes() == before
    assert resumed.best.index == small_run.best.index or small_run.best.index == 2


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_latest_checkpoint_is_reported_and_the_one_before_it_used(small_run, tmp_path, damage):
    copy = interrupted_copy(small_run.run_dir, tmp_path / "killed", keep=6)  # generation 1 half done
    latest = copy / RunStore.CHECKPOINTS / "gen-0001.json"
    latest.write_bytes(latest.read_bytes()[:20] if damage == "truncated" else b"")
    result = cli("resume", str(copy), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "checkpoint gen-0001.json cannot be read" in result.stdout + result.stderr
    resumed = RunStore(copy).records()
    assert [(r.genome, r.fitness) for r in resumed] == [(r.genome, r.fitness) for r in small_run.records]


def test_a_raised_budget_extends_a_finished_run(small_run, tmp_path):
    copy = _copy(small_run, tmp_path)
    config = yaml.safe_load((copy / RunStore.CONFIG).read_text())
    config["budget"]["max_evaluations"] = EVALUATIONS + POPULATION
    (copy / RunStore.CONFIG).write_text(yaml.safe_dump(config))
    resumed = Evolution.resume(copy, log=lambda _: None).run(progress=False)
    assert len(resumed.records) == EVALUATIONS + POPULATION
    assert resumed.records[:EVALUATIONS] == small_run.records


EDITS = {
    "seed": (lambda c: c.update(seed=7), "seed (0 -> 7)"),
    "model order": (lambda c: c.update(models=c["models"][::-1]), "models[0]"),
    "genome size": (lambda c: c["genome"].update(layer_groups=1), "genome.layer_groups (2 -> 1)"),
    "task weight": (lambda c: c["tasks"][1].update(weight=3.0), "task facts_b.weight (1.0 -> 3.0)"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_resume_refuses_a_run_whose_config_was_edited_naming_what_changed(small_run, tmp_path, edit):
    change, named = EDITS[edit]
    copy = _copy(small_run, tmp_path)
    config = yaml.safe_load((copy / RunStore.CONFIG).read_text())
    change(config)
    (copy / RunStore.CONFIG).write_text(yaml.safe_dump(config))
    before = (copy / RunStore.CANDIDATES).read_bytes()
    with pytest.raises(UserError) as refused:
        Evolution.resume(copy, log=lambda _: None)
    assert named in str(refused.value) and "\n" not in str(refused.value)
    assert (copy / RunStore.CANDIDATES).read_bytes() == before
    RunStore(copy).lock()  # a refused resume gives the lock back


def _run_on_copies(micro_world, tmp_path: Path) -> tuple[Path, Path]:
    """A started (not run) evolution whose models and item files are copies the test may change."""
    inputs = tmp_path / "inputs"
    shutil.copytree(micro_world / "models", inputs / "models")
    shutil.copytree(micro_world / "tasks", inputs / "tasks", ignore=shutil.ignore_patterns("lm_eval"))
    data = two_skill_config(inputs, 4, population=2)
    Evolution.start(parse_config(data, inputs), tmp_path / "run", log=lambda _: None).close()
    return inputs, tmp_path / "run"


def _shuffle(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[1:] + lines[:1]))


def _edit_answer(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    item = json.loads(lines[5])
    item["answer"] = (item["answer"] + 1) % len(item["choices"])
    lines[5] = json.dumps(item) + "\n"
    path.write_text("".join(lines))


CHANGES = {
    "a model's files swapped": (
        lambda inputs: [
            shutil.copy(f, inputs / "models" / "lang_b" / f.name) for f in (inputs / "models" / "math_a").iterdir()
        ],
        "files of models[1] (lang_b)",
    ),
    "an item file shuffled": (
        lambda inputs: _shuffle(inputs / "tasks" / "math_a.search.jsonl"),
        "search items of task math_a",
    ),
    "an answer edited": (
        lambda inputs: _edit_answer(inputs / "tasks" / "facts_b.search.jsonl"),
        "search items of task facts_b",
    ),
    "a held-out item edited": (
        lambda inputs: _edit_answer(inputs / "tasks" / "math_a.test.jsonl"),
        "held-out items of task math_a",
    ),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_resume_refuses_a_run_whose_models_or_items_changed_on_disk(micro_world, tmp_path, change):
    inputs, run_dir = _run_on_copies(micro_world, tmp_path)
    Evolution.resume(run_dir, log=lambda _: None).close()  # unchanged: accepted
    apply, named = CHANGES[change]
    apply(inputs)
    with pytest.raises(UserError) as refused:
        Evolution.resume(run_dir, log=lambda _: None)
    assert named in str(refused.value)


def test_run_into_a_folder_that_holds_part_of_a_run_is_refused_and_leaves_it_as_it_was(
    micro_world, small_run, tmp_path
):
    folder = tmp_path / "killed-before-its-first-record"
    folder.mkdir()
    shutil.copy(small_run.run_dir / RunStore.CONFIG, folder / RunStore.CONFIG)
    shutil.copy(small_run.run_dir / RunStore.FINGERPRINT, folder / RunStore.FINGERPRINT)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    config = write_config(micro_world, tmp_path)  # any config: the folder decides
    result = cli("run", str(config), "--run-dir", str(folder), "--seed", "7")
    assert_one_line_error(result, "already holds a run", f"mergekit-evo resume {folder}")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def _ctrl_c_deliverable() -> None:
    """In the child, before exec: Ctrl-C acts by default. A shell starts a background job (`make test &`) with
    SIGINT ignored, the ignore is inherited across exec, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_a_second_process_is_refused_while_a_run_goes_on_a_reader_is_not_and_ctrl_c_says_how_to_resume(
    micro_world, tmp_path
):
    run_dir = tmp_path / "run"
    config = write_config(micro_world, tmp_path, max_evaluations=200, population=4, run_dir=str(run_dir))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [str(BIN / "mergekit-evo"), "run", str(config), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_ctrl_c_deliverable,
    )
    try:
        candidates = run_dir / RunStore.CANDIDATES
        deadline = time.time() + 300
        while not (candidates.exists() and candidates.read_bytes().count(b"\n") >= 1) and time.time() < deadline:
            time.sleep(0.2)
        assert process.poll() is None, "the run should still be going"
        second = cli("resume", str(run_dir), "--no-progress")
        assert_one_line_error(second, "in use", f"pid {process.pid}")
        again = cli("run", str(config), "--no-progress")
        assert_one_line_error(again, "in use", f"pid {process.pid}")
        reader = cli("best", str(run_dir))
        assert reader.returncode == 0, reader.stderr
        assert process.poll() is None
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted; nothing recorded is lost: `mergekit-evo resume {run_dir}` continues the run"
    )
    lines = (run_dir / RunStore.CANDIDATES).read_bytes()
    records = RunStore(run_dir).records()
    assert lines.endswith(b"\n") and len(records) == lines.count(b"\n")
    assert len({(r.generation, r.member) for r in records}) == len({r.index for r in records}) == len(records)


# ------------------------------------------------------------------------------------------ disks that say no


def test_a_link_planted_at_a_checkpoint_s_temporary_name_is_refused_in_one_line_and_never_written_through(
    small_run, tmp_path
):
    copy = interrupted_copy(small_run.run_dir, tmp_path / "killed", keep=5)
    outside = tmp_path / "outside.txt"
    outside.write_text("a file of the user's\n")
    # the next checkpoint is written through gen-0002.json.tmp: a link there would write it into `outside`
    (copy / RunStore.CHECKPOINTS / "gen-0002.json.tmp").symlink_to(outside)
    result = cli("resume", str(copy), "--no-progress")
    assert_one_line_error(result, "gen-0002.json.tmp", "symbolic link")
    assert outside.read_text() == "a file of the user's\n"
    (copy / RunStore.CHECKPOINTS / "gen-0002.json.tmp").unlink()
    assert cli("resume", str(copy), "--no-progress").returncode == 0
    resumed = RunStore(copy).records()
    assert [(r.genome, r.fitness) for r in resumed] == [(r.genome, r.fitness) for r in small_run.records]


@pytest.mark.skipif(not can_mount(), reason="a full disk is made with a small tmpfs, which needs root and mount rights")
def test_a_full_disk_while_recording_is_one_line_and_resume_then_continues_exactly(small_run, tmp_path):
    with small_disk(tmp_path / "disk", "8m") as disk:  # room for the end's report.html (plotly.js inlined: 5 MB)
        copy = interrupted_copy(small_run.run_dir, disk / "killed", keep=2)
        filler = fill_disk(disk)
        result = cli("resume", str(copy), "--no-progress")
        assert_one_line_error(result, "no space left", str(copy), f"mergekit-evo resume {copy}")
        filler.unlink()
        assert cli("resume", str(copy), "--no-progress").returncode == 0
        resumed = RunStore(copy).records()
    assert [(r.genome, r.fitness) for r in resumed] == [(r.genome, r.fitness) for r in small_run.records]


def test_a_read_only_run_can_be_read_but_resume_says_why_it_cannot_write(small_run, tmp_path):
    copy = _copy(small_run, tmp_path)
    with read_only(copy):
        assert cli("best", str(copy)).returncode == 0
        result = cli("resume", str(copy), "--no-progress")
    assert_one_line_error(result, str(copy / RunStore.LOCK), "cannot be written")


def test_write_model_refuses_a_file_a_folder_with_files_and_a_read_only_folder_in_one_line(small_run, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("keep me")
    assert_one_line_error(cli("best", str(small_run.run_dir), "--write-model", str(target)), "is a file")
    folder = tmp_path / "full"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    assert_one_line_error(cli("best", str(small_run.run_dir), "--write-model", str(folder)), "not empty", "--force")
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):
        result = cli("best", str(small_run.run_dir), "--write-model", str(locked / "model"))
    assert_one_line_error(result, "cannot be written")
    forced = cli("best", str(small_run.run_dir), "--write-model", str(folder), "--force")
    assert forced.returncode == 0, forced.stderr
    assert (folder / "config.json").is_file() and (folder / "notes.txt").read_text() == "keep me"
