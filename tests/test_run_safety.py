"""A run folder is safe to open: no code runs from it, no view writes into it or outside it, and bad input is refused
before the folder exists.

One test (or one parametrized case) per finding of issue 28's probe, a careless user's or a hostile colleague's:
malicious pickles in every checkpoint position, `report --out` over the record log, links out of the folder,
inputs found bad only after the folder existed, non-finite numbers, resumes over lost state, readers that write,
tracebacks instead of one line, duplicate YAML keys, `"answer": true` and a foreign Host header.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pickle
import shutil
import threading
from pathlib import Path

import pytest
import yaml

from helpers import assert_one_line_error, cli, cli_here, designed_record, snapshot, write_config
from mergekit_evo.config import load_config, parse_config
from mergekit_evo.demo.configs import two_skill_config
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.rank.ranking import leader
from mergekit_evo.run.evolution import Evolution
from mergekit_evo.store.runs import RunStore
from mergekit_evo.testing import interrupted_copy
from mergekit_evo.views.dashboard import Dashboard, make_server

EVALUATIONS, POPULATION = 12, 4
SECRET = "root:x:0:0:a secret outside the run folder\n"


@pytest.fixture(scope="module")
def finished(micro_world, tmp_path_factory):
    """A finished CMA-ES run of the demo's config (12 candidates in 3 generations), copied by each test."""
    run_dir = tmp_path_factory.mktemp("safety") / "run"
    data = two_skill_config(micro_world, EVALUATIONS, optimizer="cma", population=POPULATION)
    data["baselines"] = []
    return Evolution.start(parse_config(data, micro_world), run_dir, log=lambda _: None).run(progress=False)


def _copy(run, tmp_path: Path, name: str = "copy") -> Path:
    copy = tmp_path / name
    shutil.copytree(run.run_dir, copy)
    return copy


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes but run.lock's (which holds the pid of whoever locked the run last)."""
    return snapshot(folder, but=(RunStore.LOCK,))


class _Plant:
    """A pickle that runs a command when loaded: what a hostile colleague would leave in a run folder."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant_pickles(run_dir: Path, marker: Path, generations: int) -> None:
    """A malicious pickle at every checkpoint position: each gen-NNNN.pkl of an earlier version, and over each JSON."""
    payload = pickle.dumps(_Plant(marker))
    folder = run_dir / RunStore.CHECKPOINTS
    for generation in range(generations + 2):
        (folder / f"gen-{generation:04d}.pkl").write_bytes(payload)
    for checkpoint in folder.glob("gen-*.json"):
        if checkpoint.name != "gen-0000.json":
            checkpoint.write_bytes(payload)


# ------------------------------------------------------------------------------------------ 1. no code from data


def test_the_checkpoints_are_json_and_no_command_runs_a_planted_pickle(finished, tmp_path):
    assert sorted(p.name for p in (finished.run_dir / RunStore.CHECKPOINTS).iterdir()) == [
        f"gen-{g:04d}.json" for g in range(EVALUATIONS // POPULATION + 1)
    ]
    marker = tmp_path / "pwned"
    copy = _copy(finished, tmp_path)
    _plant_pickles(copy, marker, EVALUATIONS // POPULATION)
    for args in (("best", str(copy)), ("report", str(copy)), ("report", str(copy), "--out", str(tmp_path / "r.html"))):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
        assert not marker.exists(), args
    for root, url in ((copy, f"/run/{copy.name}/state"), (tmp_path, "/state")):  # one run, and a folder of runs
        status, _, _ = Dashboard(root).route(url)
        assert status == 200 and not marker.exists()
    result = cli("resume", str(copy), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert not marker.exists()


def test_a_killed_run_resumes_exactly_by_replaying_its_records_past_planted_pickles(finished, tmp_path):
    marker = tmp_path / "pwned"
    copy = interrupted_copy(finished.run_dir, tmp_path / "killed", keep=6)  # generation 1 half done
    _plant_pickles(copy, marker, 1)
    result = cli_here("resume", str(copy), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    resumed = RunStore(copy).records()
    assert [(r.genome, r.fitness) for r in resumed] == [(r.genome, r.fitness) for r in finished.records]


def test_a_run_of_the_pickle_version_resumes_exactly_from_its_records_without_opening_a_pickle(finished, tmp_path):
    marker = tmp_path / "pwned"
    copy = interrupted_copy(finished.run_dir, tmp_path / "old", keep=9)  # generation 2 a quarter done
    payload = pickle.dumps(_Plant(marker))
    for checkpoint in list((copy / RunStore.CHECKPOINTS).iterdir()):  # as 0.1 left it: pickles only
        checkpoint.with_suffix(".pkl").write_bytes(payload)
        checkpoint.unlink()
    logged: list[str] = []
    resumed = Evolution.resume(copy, log=logged.append).run(progress=False)
    assert not marker.exists()
    assert any("pickles are never opened" in line for line in logged), logged
    assert [(r.genome, r.fitness) for r in resumed.records] == [(r.genome, r.fitness) for r in finished.records]


def test_an_optimizer_that_does_not_replay_its_records_is_refused_in_one_line(finished, tmp_path):
    copy = interrupted_copy(finished.run_dir, tmp_path / "killed", keep=6)
    lines = (copy / RunStore.CANDIDATES).read_text().splitlines()
    first = json.loads(lines[1])
    first["genome"] = [min(1.0, v + 0.01) for v in first["genome"]]  # as another plugin version would have asked
    lines[1] = json.dumps(first)
    (copy / RunStore.CANDIDATES).write_text("\n".join(lines) + "\n")
    before = _snapshot(copy)
    result = cli_here("resume", str(copy), "--no-progress")
    assert_one_line_error(result, "optimizer cma proposes other candidates than recorded", "generation 0, member 1")
    assert _snapshot(copy) == before


# ------------------------------------------------------------------------------------------ 2. report --out


@pytest.mark.parametrize("target", [RunStore.CANDIDATES, "sub/report.html", RunStore.REPORT_HTML])
def test_report_out_refuses_any_path_inside_a_run_folder(finished, tmp_path, target):
    copy = _copy(finished, tmp_path)
    (copy / "sub").mkdir()
    before = _snapshot(copy)
    result = cli_here("report", str(copy), "--out", str(copy / target))
    assert_one_line_error(result, "--out", "inside the run folder")
    assert _snapshot(copy) == before


def test_report_out_replaces_a_report_but_no_other_file_without_force(finished, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    assert_one_line_error(cli_here("report", str(finished.run_dir), "--out", str(notes)), "not a mergekit-evo report")
    assert notes.read_text() == "my notes\n"
    page = tmp_path / "page.html"
    assert cli_here("report", str(finished.run_dir), "--out", str(page)).returncode == 0
    assert cli_here("report", str(finished.run_dir), "--out", str(page)).returncode == 0  # a report it wrote: replaced
    assert cli_here("report", str(finished.run_dir), "--out", str(notes), "--force").returncode == 0
    assert "<title>mergekit-evo run" in notes.read_text()
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("where", ["a folder", "a missing folder"])
def test_report_out_onto_a_folder_or_into_a_missing_one_is_one_line(finished, tmp_path, where):
    out = tmp_path if where == "a folder" else tmp_path / "missing" / "r.html"
    assert_one_line_error(cli_here("report", str(finished.run_dir), "--out", str(out)), "--out")


# ------------------------------------------------------------------------------------------ 3. links out of the folder


def test_a_linked_report_md_is_never_served_embedded_or_reported(finished, tmp_path):
    secret = tmp_path / "passwd"
    secret.write_text(SECRET)
    copy = _copy(finished, tmp_path)
    (copy / RunStore.REPORT).unlink()
    (copy / RunStore.REPORT).symlink_to(secret)
    with _serving(Dashboard(copy)) as port:
        for url in (f"/run/{copy.name}/files/report.md", f"/run/{copy.name}/state"):
            status, body = _get(port, url)
            assert status == 500 and b"symbolic link" in body and b"secret" not in body, url
    result = cli_here("report", str(copy), "--out", str(tmp_path / "r.html"))
    assert_one_line_error(result, "report.md", "symbolic link")
    assert not (tmp_path / "r.html").exists()


def test_a_linked_run_lock_is_never_written_through(finished, tmp_path):
    outside = tmp_path / "outside"
    outside.write_text(SECRET)
    copy = _copy(finished, tmp_path)
    (copy / RunStore.LOCK).unlink(missing_ok=True)
    (copy / RunStore.LOCK).symlink_to(outside)
    for args in (("report", str(copy)), ("resume", str(copy), "--no-progress")):
        assert_one_line_error(cli_here(*args), "run.lock", "symbolic link")
        assert outside.read_text() == SECRET


def test_a_linked_candidates_log_is_neither_read_nor_cut(finished, tmp_path):
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes((finished.run_dir / RunStore.CANDIDATES).read_bytes() + b'{"torn')
    before = outside.read_bytes()
    copy = _copy(finished, tmp_path)
    (copy / RunStore.CANDIDATES).unlink()
    (copy / RunStore.CANDIDATES).symlink_to(outside)
    for args in (("best", str(copy)), ("report", str(copy)), ("resume", str(copy), "--no-progress")):
        assert_one_line_error(cli_here(*args), "candidates.jsonl", "symbolic link")
    assert outside.read_bytes() == before


# ------------------------------------------------------------------------------------------ 4. bad inputs, no folder


def _model_copy(world: Path, tmp_path: Path, name: str = "math_a") -> Path:
    copy = tmp_path / "models" / name
    shutil.copytree(world / "models" / name, copy)
    return copy


def _break_weights_cut(model: Path) -> None:
    weights = next(model.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1000])


def _break_weights_gone(model: Path) -> None:
    for weights in model.glob("*.safetensors"):
        weights.unlink()


def _break_weights_pickled(model: Path) -> None:
    for weights in model.glob("*.safetensors"):
        weights.rename(model / "pytorch_model.bin")


def _break_tokenizer_gone(model: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "special_tokens_map.json"):
        (model / name).unlink(missing_ok=True)


def _break_tokenizer_remote(model: Path) -> None:
    settings = model / "tokenizer_config.json"
    data = json.loads(settings.read_text()) if settings.exists() else {}
    data["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    settings.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "damage, words",
    [
        (_break_weights_cut, ["models[0]", "cut short"]),
        (_break_weights_gone, ["models[0]", "holds no weights"]),
        (_break_weights_pickled, ["models[0]", "pytorch_model.bin", "pickle"]),
        (_break_tokenizer_gone, ["models[0]", "holds no tokenizer"]),
        (_break_tokenizer_remote, ["models[0]", "auto_map"]),
    ],
    ids=["weights cut short", "no weights", "pickle weights", "no tokenizer", "tokenizer auto_map"],
)
def test_a_broken_model_folder_is_one_line_and_no_run_folder(micro_world, tmp_path, damage, words):
    model = _model_copy(micro_world, tmp_path)
    damage(model)
    data = two_skill_config(micro_world, 4, population=2)
    data["models"][0] = str(model)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "run"
    assert_one_line_error(cli_here("run", str(config), "--run-dir", str(run_dir), "--no-progress"), *words)
    assert not run_dir.exists()


def _items_with(micro_world: Path, tmp_path: Path, change) -> Path:
    source = Path(two_skill_config(micro_world)["tasks"][0]["items"])
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    change(rows[3])
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda row: row.update(choices=[" ", *row["choices"][1:]]), ["items.jsonl:4", "choice is empty"]),
        (lambda row: row.update(answer=True), ["items.jsonl:4", "'answer' is true"]),
        (lambda row: row.update(prompt="seven " * 20_000), ["context"]),
    ],
    ids=["empty choice", "answer true", "prompt past the context"],
)
def test_a_bad_item_is_one_line_before_the_run_folder_exists(micro_world, tmp_path, change, words):
    data = two_skill_config(micro_world, 4, population=2)
    data["tasks"][0]["items"] = str(_items_with(micro_world, tmp_path, change))
    with pytest.raises(UserError) as refused:
        Evolution.start(parse_config(data, micro_world), tmp_path / "run", log=lambda _: None)
    assert all(word in str(refused.value) for word in words), str(refused.value)
    assert not (tmp_path / "run").exists()


def test_a_non_utf8_item_file_or_config_is_one_line(micro_world, tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_bytes(b'{"id": "a", "prompt": "caf\xe9", "choices": ["1", "2"], "answer": 0}\n')
    data = two_skill_config(micro_world, 4, population=2)
    data["tasks"][0]["items"] = str(items)
    with pytest.raises(UserError, match="not UTF-8"):
        Evolution.start(parse_config(data, micro_world), tmp_path / "run", log=lambda _: None)
    config = write_config(micro_world, tmp_path)
    config.write_bytes(config.read_bytes() + b"# caf\xe9\n")
    assert_one_line_error(cli_here("run", str(config), "--run-dir", str(tmp_path / "run2")), "not UTF-8")
    assert not (tmp_path / "run").exists() and not (tmp_path / "run2").exists()


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda d: d["genome"]["parameters"].update(weight={"min": 0, "max": float("inf")}), ["weight", "finite"]),
        (lambda d: d["genome"]["parameters"].update(weight={"min": float("nan"), "max": 1}), ["weight", "finite"]),
        (lambda d: d["optimizer"].update(population=1_000_000_000), ["optimizer.population", "10000"]),
        (lambda d: d["optimizer"].update(population=True), ["population", "yes/no"]),
        (lambda d: d.update(executor={"name": "ray", "options": {"workers": 64 * (os.cpu_count() or 1)}}), ["CPUs"]),
    ],
    ids=["infinite bound", "nan bound", "huge population", "boolean population", "ray workers past the CPUs"],
)
def test_a_number_out_of_reach_is_one_line_and_no_run_folder(micro_world, tmp_path, change, words):
    data = two_skill_config(micro_world, 4, population=2)
    change(data)
    with pytest.raises(UserError) as refused:
        Evolution.start(parse_config(data, micro_world), tmp_path / "run", log=lambda _: None)
    assert all(word in str(refused.value) for word in words), str(refused.value)
    assert not (tmp_path / "run").exists()


def test_a_duplicate_yaml_key_is_one_line_naming_it(micro_world, tmp_path):
    config = write_config(micro_world, tmp_path)
    config.write_text(config.read_text() + "seed: 3\n")  # seed is already there: the last would win silently
    with pytest.raises(UserError, match="duplicate key 'seed'"):
        load_config(config)


# ------------------------------------------------------------------------------------------ 5. non-finite numbers


def _record(index: int, fitness: float) -> dict:
    return designed_record(index, fitness=fitness).to_row()


def test_a_record_with_non_finite_fitness_or_a_repeated_index_is_reported_once_and_never_ranked(tmp_path):
    rows = [_record(0, 0.4), _record(1, float("inf")), _record(2, 0.6), _record(2, 0.9), _record(3, float("nan"))]
    logged: list[str] = []
    store = RunStore(tmp_path / "run", log=logged.append)
    store.path.mkdir()
    store.candidates_path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    read = store.read_records()
    assert [r.index for r in read.rows] == [0, 2] and read.lines == 5
    assert leader(read.rows).index == 2 and leader(read.rows).fitness == 0.6
    assert [line.split(":")[1] for line in logged] == ["2", "4", "5"]
    assert "repeats line 3" in logged[1]
    store.read_records()
    assert len(logged) == 3  # once per store


# ------------------------------------------------------------------------------------------ 6. the log is the truth


def test_resume_refuses_a_run_whose_log_is_gone_and_writes_nothing(finished, tmp_path):
    copy = _copy(finished, tmp_path)
    (copy / RunStore.CANDIDATES).unlink()
    before = _snapshot(copy)
    assert_one_line_error(cli_here("resume", str(copy), "--no-progress"), "candidates.jsonl is missing")
    assert _snapshot(copy) == before


def test_resume_refuses_a_run_without_a_fingerprint_unless_the_inputs_are_accepted(finished, tmp_path):
    copy = _copy(finished, tmp_path)
    (copy / RunStore.FINGERPRINT).unlink()
    config = yaml.safe_load((copy / RunStore.CONFIG).read_text())
    config["seed"] = 7
    (copy / RunStore.CONFIG).write_text(yaml.safe_dump(config))
    assert_one_line_error(
        cli_here("resume", str(copy), "--no-progress"), "fingerprint.json is missing", "--accept-inputs"
    )
    assert not (copy / RunStore.FINGERPRINT).exists()
    config["seed"] = 0  # put back; the user vouches for the inputs
    (copy / RunStore.CONFIG).write_text(yaml.safe_dump(config))
    result = cli_here("resume", str(copy), "--no-progress", "--accept-inputs")
    assert result.returncode == 0, result.stderr
    assert json.loads((copy / RunStore.FINGERPRINT).read_text()) == json.loads(
        (finished.run_dir / RunStore.FINGERPRINT).read_text()
    )


def test_resume_refuses_records_whose_item_selection_is_gone(finished, tmp_path):
    copy = _copy(finished, tmp_path)
    (copy / RunStore.SELECTION).unlink()
    assert_one_line_error(cli_here("resume", str(copy), "--no-progress"), "selection.json is missing")
    assert not (copy / RunStore.SELECTION).exists()


# ------------------------------------------------------------------------------------------ 7. readers never write


def test_report_writes_report_html_only_and_leaves_a_torn_tail_for_the_writer(finished, tmp_path):
    copy = _copy(finished, tmp_path)
    (copy / RunStore.REPORT_HTML).unlink()
    with (copy / RunStore.CANDIDATES).open("ab") as f:
        f.write(b'{"index": 99, "gen')
    before = _snapshot(copy)
    assert cli_here("report", str(copy)).returncode == 0
    after = _snapshot(copy)
    assert set(after) - set(before) == {RunStore.REPORT_HTML}
    assert {k: v for k, v in after.items() if k in before} == before


# ------------------------------------------------------------------------------------------ 8. one line, not a traceback


@pytest.mark.parametrize("part", [RunStore.CANDIDATES, RunStore.LOCK])
def test_a_folder_where_a_run_file_belongs_is_one_line(finished, tmp_path, part):
    copy = _copy(finished, tmp_path)
    (copy / part).unlink(missing_ok=True)
    (copy / part).mkdir()
    for args in (("report", str(copy)), ("resume", str(copy), "--no-progress")):
        assert_one_line_error(cli_here(*args), part)


def test_a_file_where_the_checkpoints_folder_belongs_is_one_line(finished, tmp_path):
    copy = interrupted_copy(finished.run_dir, tmp_path / "killed", keep=6)
    shutil.rmtree(copy / RunStore.CHECKPOINTS)
    (copy / RunStore.CHECKPOINTS).write_text("not a folder\n")
    assert_one_line_error(cli_here("resume", str(copy), "--no-progress"), "checkpoints")


def test_a_line_nested_past_the_parser_s_stack_is_reported_and_skipped(finished, tmp_path):
    copy = _copy(finished, tmp_path)
    with (copy / RunStore.CANDIDATES).open("a") as f:
        f.write("[" * 200_000 + "]" * 200_000 + "\n")
    for args in (("best", str(copy)), ("report", str(copy))):
        result = cli_here(*args)
        assert result.returncode == 0, result.stderr
        assert f"candidates.jsonl:{EVALUATIONS + 1}: skipped" in result.stderr
    assert cli_here("resume", str(copy), "--no-progress").returncode == 0


def test_a_port_out_of_range_is_one_line(finished):
    assert_one_line_error(cli_here("dashboard", str(finished.run_dir), "--port", "99999"), "--port")


# ------------------------------------------------------------------------------------------ 9. the Host header


@contextlib.contextmanager
def _serving(board: Dashboard):
    """The dashboard's real HTTP server on a free port of 127.0.0.1, for the duration."""
    server = make_server(board, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _get(port: int, url: str, host: str | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", url, headers={"Host": host or f"127.0.0.1:{port}"})
    response = connection.getresponse()
    answer = response.status, response.read()
    connection.close()
    return answer


def test_the_dashboard_answers_only_requests_addressed_to_localhost(finished):
    url = f"/run/{finished.run_dir.name}/files/best.yaml"
    with _serving(Dashboard(finished.run_dir)) as port:
        hosts = (f"127.0.0.1:{port}", f"localhost:{port}", "attacker.example", f"attacker.example:{port}")
        answers = {host: _get(port, url, host)[0] for host in hosts}
    assert answers == {
        f"127.0.0.1:{port}": 200,
        f"localhost:{port}": 200,
        "attacker.example": 421,
        f"attacker.example:{port}": 421,
    }
