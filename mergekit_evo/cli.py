"""The `mergekit-evo` command line. User errors print one line and exit with status 2, never a traceback."""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

import click

from mergekit_evo.errors import RunFailure, UserError
from mergekit_evo.threads import apply_process_defaults


def _quiet_libraries() -> None:
    """transformers' per-load progress bars and advice drown our own progress; keep only its errors."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="mergekit-evo")
def cli() -> None:
    """Evolve mergekit merge recipes with cheap fitness estimates.

    \b
    Quick start (no downloads; builds tiny local models first):
      mergekit-evo demo
    """


@cli.group("tiny-world")
def tiny_world() -> None:
    """The bundled tiny world: real small Llama specialists, item sets and lm-eval tasks, built locally."""


@tiny_world.command("build")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--seed", type=int, help="Seed for data, initialisation and training.  [default: 0]")
@click.option("--hidden", type=int, help="Hidden size of the Llama models.  [default: 256]")
@click.option("--layers", type=int, help="Number of transformer layers.  [default: 8]")
@click.option("--base-steps", type=int, help="Training steps of the base model.  [default: 800]")
@click.option("--specialist-steps", type=int, help="Training steps of the math specialist.  [default: 500]")
@click.option("--language-steps", type=int, help="Training steps of the language specialist.  [default: 500]")
@click.option("--items-per-skill", type=int, help="Facts items per skill (half search, half test).  [default: 256]")
@click.option(
    "--math-search-items",
    type=int,
    help="Arithmetic questions in the search split; the rest (256) are held out.  [default: 536]",
)
@click.option(
    "--pinned/--unpinned",
    default=None,
    help="Pin the build's numerics (torch's kernels, threads, MKL) for the same weights on every x86-64 CPU with "
    "AVX2 (the default), or build with this CPU's own kernels.",
)
@click.option("--force", is_flag=True, help="Rebuild even when a matching world is already there.")
def tiny_world_build(directory: Path | None, force: bool, **sizes) -> None:
    """Build the tiny world into DIRECTORY (default: the cache), or reuse a matching one.

    \b
    The world is a miniature of Sakana's Japanese-math experiment: a base Llama, a specialist for arithmetic
    (plus, minus, times) asked in language A, a specialist that knows all of language B but no arithmetic,
    item sets (JSONL, search and test splits) and lm-eval task YAMLs over the same files. The target skill,
    arithmetic asked in B (math_b), is in no model's training data. A table of measured accuracies ends the build.

    \b
    Examples:
      mergekit-evo tiny-world build                 # into ~/.cache/mergekit-evo/tiny-world/<fingerprint>
      mergekit-evo tiny-world build ./world --seed 1
      mergekit-evo tiny-world build --unpinned      # this CPU's own kernels: not the reference weights
    """
    from pydantic import ValidationError

    from mergekit_evo.config import format_validation_error
    from mergekit_evo.tiny_world.build import (
        WorldSpec,
        ensure_world,
        format_table,
        world_manifest,
    )

    _quiet_libraries()
    try:
        spec = WorldSpec(**{name: value for name, value in sizes.items() if value is not None})
    except ValidationError as e:
        raise UserError(format_validation_error(e, as_flag=True)) from None
    path = ensure_world(directory, spec, force=force, log=click.echo)
    click.echo(format_table(world_manifest(path)))
    click.echo(f"tiny world ready at {path}")


@tiny_world.command("path")
def tiny_world_path() -> None:
    """Print the default tiny world's folder, building it first if needed (for `export TINY_WORLD=$(...)`)."""
    from mergekit_evo.tiny_world import ensure_world

    _quiet_libraries()
    click.echo(ensure_world(log=lambda line: click.echo(line, err=True)))


class Interrupted(Exception):
    """Ctrl-C during a run: told with the command that continues it."""

    def __init__(self, run_dir: Path):
        super().__init__(f"interrupted; nothing recorded is lost: `mergekit-evo resume {run_dir}` continues the run")


class AllFailed(Exception):
    """A run whose every candidate failed: it finished, but found nothing."""


def _start_or_resume(make_evolution, run_dir: Path, progress: bool = True) -> None:
    """Build the run (`make_evolution()`), run it and print its report; Ctrl-C says how to continue."""
    from mergekit_evo.runs import RunStore

    try:
        result = make_evolution().run(progress=progress)
    except KeyboardInterrupt:
        raise Interrupted(run_dir) from None
    click.echo("")
    click.echo(result.run_dir.joinpath(RunStore.REPORT).read_text())
    click.echo(f"run directory: {result.run_dir}")
    click.echo(
        f"plots: {result.run_dir.joinpath(RunStore.REPORT_HTML)} (open it in a browser; "
        f"`mergekit-evo dashboard {result.run_dir}` serves the same views live)"
    )
    if result.best is None and result.records:
        first = next(r.error for r in result.records if r.error)
        raise AllFailed(
            f"every candidate failed; the first error was {first} (all are in "
            f"{result.run_dir.joinpath(RunStore.CANDIDATES)})"
        )


@cli.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path),
    help="Where to record the run, relative to the working directory (default: the config's run_dir, relative to the config file, else runs/<config name>).",
)
@click.option("--max-evaluations", type=int, help="Override budget.max_evaluations.")
@click.option("--seed", type=int, help="Override the config's seed.")
@click.option("--no-progress", is_flag=True, help="No progress bars (for logs).")
def run(config: Path, run_dir: Path | None, max_evaluations: int | None, seed: int | None, no_progress: bool) -> None:
    """Start an evolution from a CONFIG YAML.

    \b
    Every candidate is appended to RUN_DIR/candidates.jsonl the moment it is scored; a run stopped at any
    point (Ctrl-C, kill -9, power loss) continues with `mergekit-evo resume RUN_DIR`.

    \b
    Example:
      mergekit-evo run examples/tiny-task-arithmetic.yaml --run-dir runs/first
    """
    from mergekit_evo.config import RunOverrides, load_config
    from mergekit_evo.runs import RunStore

    overrides = RunOverrides.parse(max_evaluations=max_evaluations, seed=seed)
    if config.is_dir() and RunStore(config).parts():
        raise UserError(f"{config} is a run directory, not a config file; `mergekit-evo resume {config}` continues it")
    cfg = overrides.apply(load_config(config))  # first, so a config error is told before torch and mergekit load
    from mergekit_evo.search import Evolution

    _quiet_libraries()
    run_dir = run_dir or cfg.run_dir or Path("runs") / config.stem
    _start_or_resume(lambda: Evolution.start(cfg, run_dir, log=click.echo), run_dir, progress=not no_progress)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--no-progress", is_flag=True, help="No progress bars (for logs).")
@click.option(
    "--accept-inputs",
    is_flag=True,
    help="For a run whose fingerprint.json is missing: record the current models, genome, seed and items as the "
    "run's (you vouch that its records were scored with them).",
)
def resume(run_dir: Path, no_progress: bool, accept_inputs: bool) -> None:
    """Continue a stopped run from RUN_DIR, re-scoring nothing it has recorded.

    \b
    The optimizer is rebuilt by replaying the recorded candidates through it, so candidates.jsonl is the run's
    memory: a resume refuses, in one line, a run whose log, fingerprint.json or selection.json is missing.

    \b
    Example:
      mergekit-evo resume runs/first
    """
    from mergekit_evo.search import Evolution

    _quiet_libraries()
    _start_or_resume(
        lambda: Evolution.resume(run_dir, log=click.echo, accept_inputs=accept_inputs),
        run_dir,
        progress=not no_progress,
    )


@cli.command(context_settings={"max_content_width": 110})
@click.argument("genome_config", type=click.Path(path_type=Path))
@click.option(
    "--storage-path",
    required=True,
    type=click.Path(path_type=Path),
    help="Where the run lives (STORAGE_PATH/mergekit-evo-run) and best_config.yaml is written.",
)
@click.option(
    "--max-fevals", type=int, default=100, show_default=True, help="Candidates to score: budget.max_evaluations."
)
@click.option(
    "--strategy",
    "-s",
    type=click.Choice(["pool", "buffered", "serial"]),
    default="pool",
    show_default=True,
    help="pool, buffered: the Ray executor; serial: the local one.",
)
@click.option("--num-gpus", type=int, help="Ray workers, one GPU each (default: one per GPU the cluster has).")
@click.option(
    "--in-memory/--no-in-memory",
    default=False,
    help="Accepted: candidates are always merged in memory (the resident merger).",
)
@click.option("--vllm/--no-vllm", default=False, help="Score with lm-eval's vllm model.")
@click.option(
    "--merge-cuda/--no-merge-cuda", default=None, help="Merge on cuda / on the CPU (default: cuda where there is one)."
)
@click.option(
    "--trust-remote-code/--no-trust-remote-code", default=False, help="Refused: models load without remote code."
)
@click.option("--allow-crimes/--no-allow-crimes", default=False, help="Refused.")
@click.option("--random-seed", type=int, default=0, show_default=True, help="The run's seed.")
@click.option("--batch-size", type=int, help="Each task's batch_size.")
@click.option("--sigma0", type=float, default=1 / 6, show_default=True, help="CMA-ES's initial step size.")
@click.option("--wandb/--no-wandb", default=False, help="Log to W&B: the wandb observer (mergekit-evo-wandb).")
@click.option("--wandb-project", help="The W&B project (with --wandb).")
@click.option("--wandb-entity", help="The W&B entity (with --wandb).")
@click.option(
    "--task-search-path", multiple=True, help="Folders of lm-eval task YAMLs (repeatable): each task's include_path."
)
@click.option(
    "--i-understand-the-depths-of-the-evils-i-am-unleashing",
    "allow_benchmark_tasks",
    is_flag=True,
    help="Accepted (no task name is refused here).",
)
@click.option(
    "--save-final-model/--no-save-final-model",
    default=True,
    help="Write the best merge to STORAGE_PATH/mergekit-evo-run/best_model.",
)
@click.option("--reshard/--no-reshard", default=True, help="Accepted: models are read as they are.")
@click.option("--timeout", type=float, help="Seconds: budget.max_seconds.")
@click.option("--force-population-size", type=int, help="CMA-ES population (default: CMA-ES's own, 4 + 3 ln(genes)).")
@click.option("--no-progress", is_flag=True, help="No progress bars (for logs).")
def evolve(genome_config: Path, storage_path: Path, no_progress: bool, allow_benchmark_tasks: bool, **flags) -> None:
    """mergekit-evolve's command line, unchanged: GENOME_CONFIG is its config file (genome: and tasks:).

    \b
    mergekit-evolve is deprecated in mergekit's own source; this runs the same search (CMA-ES over the genome,
    lm-eval tasks) on mergekit-evo: every candidate recorded, Ctrl-C or kill -9 resumed by the same command, a
    failing candidate recorded and skipped, CPU-only runs allowed. One line says how each flag was mapped; a flag
    that cannot be honoured is refused in one line.

    \b
    Example:
      mergekit-evo evolve genome.yml --storage-path evol_storage --task-search-path eval_tasks --max-fevals 200
      mergekit-yaml evol_storage/best_config.yaml merged
    """
    from mergekit_evo.config import load_yaml_mapping, parse_config
    from mergekit_evo.evolve_compat import EvolveFlags, cma_population, evolve_flags, from_mergekit_evolve
    from mergekit_evo.runs import RunStore

    raw = load_yaml_mapping(genome_config)
    if not (isinstance(raw.get("genome"), dict) and "models" in raw["genome"]):
        raise UserError(
            f"{genome_config}: not a mergekit-evolve config (it has no genome.models); run a mergekit-evo config "
            "with `mergekit-evo run`"
        )
    import torch

    parsed = EvolveFlags(storage_path=storage_path, **flags)
    data = evolve_flags(
        from_mergekit_evolve(raw), parsed, torch.cuda.device_count() if torch.cuda.is_available() else 0
    )
    from mergekit_evo.plugins import registry

    if data["executor"]["name"] == "ray" and "ray" not in registry().names("executors"):
        raise UserError(
            f"--strategy {parsed.strategy}: runs on Ray, and the Ray executor is not installed; "
            "`pip install mergekit-evo-ray` (plugins/ray), or use --strategy serial"
        )
    config = parse_config(data, Path.cwd())  # mergekit-evolve read model paths as given, from the working directory
    if parsed.force_population_size is None:
        from mergekit_evo.spaces import genome_space

        population = cma_population(genome_space(config, relax_choices=True).dim)
        config = config.model_copy(update={"optimizer": config.optimizer.model_copy(update={"population": population})})
        parsed.mapped.append(f"CMA-ES population {population} (its default for the genome)")
    click.echo("mergekit-evolve flags: " + "; ".join(parsed.mapped), err=True)
    from mergekit_evo.search import Evolution

    _quiet_libraries()
    run_dir = storage_path / "mergekit-evo-run"
    if RunStore(run_dir).parts():
        click.echo(f"{run_dir} holds this run already: resuming it", err=True)
        _start_or_resume(lambda: Evolution.resume(run_dir, log=click.echo), run_dir, progress=not no_progress)
    else:
        _start_or_resume(lambda: Evolution.start(config, run_dir, log=click.echo), run_dir, progress=not no_progress)
    best = RunStore(run_dir).read_text(RunStore.BEST)
    if best is not None:
        target = storage_path / "best_config.yaml"
        target.write_text(best)
        click.echo(f"best merge recipe: {target} (as mergekit-evolve wrote it; `mergekit-yaml {target} OUT` builds it)")


@cli.command()
@click.option(
    "--run-dir", type=click.Path(path_type=Path), help="Default: runs/demo, or runs/demo-pareto with --multi-objective."
)
@click.option("--max-evaluations", type=int, help="Default: 296, 37 generations of 8 (checked after each generation).")
@click.option(
    "--optimizer",
    help="Any installed optimizer (see `mergekit-evo plugins`). Default: cma if installed, else random; nsga2 with --multi-objective.",
)
@click.option(
    "--multi-objective",
    is_flag=True,
    help="math_b and facts_b as two objectives (NSGA-II); the report lists the Pareto front.",
)
@click.option("--fresh", is_flag=True, help="Delete RUN_DIR first instead of resuming it.")
def demo(
    run_dir: Path | None, max_evaluations: int | None, optimizer: str | None, multi_objective: bool, fresh: bool
) -> None:
    """Build (or reuse) the tiny world and evolve a merge for a skill neither specialist has.

    \b
    Sakana's Japanese-math experiment in miniature: the math-A specialist and the language-B specialist are
    merged with task arithmetic, one weight per model and layer in [0, 2], evolved (CMA-ES by default) for
    arithmetic asked in language B (math_b), which is in no model's training data. A fifth of the search
    items chooses the final merge among the top 5; the report scores the parents, plain merges and the
    evolved merge on held-out items, with 95% intervals and McNemar p-values.
    With --multi-objective math_b and facts_b are two objectives and NSGA-II returns the trade-off front.
    A second `demo` resumes or re-reports the same run directory; --fresh starts over.
    """
    import shutil

    from mergekit_evo.config import parse_config
    from mergekit_evo.demo import DEMO_EVALUATIONS, cross_skill_config
    from mergekit_evo.plugins import registry
    from mergekit_evo.runs import RunStore
    from mergekit_evo.search import Evolution
    from mergekit_evo.tiny_world import ensure_world
    from mergekit_evo.tiny_world.build import format_table, world_manifest

    _quiet_libraries()
    world = ensure_world(log=click.echo)
    click.echo(format_table(world_manifest(world)))
    run_dir = run_dir or Path("runs/demo-pareto" if multi_objective else "runs/demo")
    if optimizer is None:
        optimizer = "nsga2" if multi_objective else ("cma" if "cma" in registry().names("optimizers") else "random")
    if fresh:
        RunStore(run_dir).check_not_in_use()  # never delete a run another process is writing
        shutil.rmtree(run_dir, ignore_errors=True)

    def make_evolution():
        if RunStore(run_dir).parts():
            evolution = Evolution.resume(run_dir, log=click.echo)
            click.echo(
                f"{run_dir} holds an earlier demo (optimizer {evolution.config.optimizer.name}); continuing "
                "it, --fresh starts over"
            )
            return evolution
        objectives = "separate" if multi_objective else "weighted"
        budget = DEMO_EVALUATIONS if max_evaluations is None else max_evaluations
        cfg = parse_config(cross_skill_config(world, budget, optimizer, objectives=objectives), world)
        return Evolution.start(cfg, run_dir, log=click.echo)

    _start_or_resume(make_evolution, run_dir)


@cli.command()
@click.argument("name", required=False)
def plugins(name: str | None) -> None:
    """List the loaded plugins: what each provides and from which distribution.

    \b
    With NAME, one plugin in full: its description and every option with its type, default and meaning, e.g.
      mergekit-evo plugins cma
    """
    from mergekit_evo.plugins import KINDS, registry

    reg = registry()
    if name is not None:
        _describe_plugin(reg, name)
        return
    for kind in KINDS:
        click.echo(f"{kind.replace('_', ' ')}:")
        for name in reg.names(kind):
            if name in reg.conflicts[kind]:
                both = " and ".join(sorted(reg.conflicts[kind][name]))
                click.echo(f"  {name:<14} CONFLICT: registered by {both}; a config must say which (providers:)")
                continue
            doc = (reg.factories[kind][name].__doc__ or "").strip().splitlines()
            click.echo(f"  {name:<14} {reg.providers[kind][name]:<28} {doc[0] if doc else ''}")
    for name, error in reg.failed.items():
        click.echo(f"failed to load plugin {name}: {error}")


def _describe_plugin(reg, name: str) -> None:
    """`plugins NAME`: each kind NAME is registered for, its description, and its options with defaults."""
    from pydantic_core import PydanticUndefined

    from mergekit_evo.errors import close_matches
    from mergekit_evo.plugins import KINDS

    kinds = [kind for kind in KINDS if name in reg.factories[kind]]
    if not kinds:
        every = sorted({n for kind in KINDS for n in reg.names(kind)})
        raise UserError(f"plugins: no plugin named {name!r} is installed; {close_matches(name, every)}")
    for kind in kinds:
        factory = reg.factories[kind][name]
        click.echo(f"{name}: {kind.replace('_', ' ')[:-1]} from {reg.providers[kind][name]}")
        doc = inspect.cleandoc(factory.__doc__ or "")
        if doc:
            click.echo("\n".join("  " + line if line else "" for line in doc.splitlines()))
        fields = getattr(factory, "Options", None)
        fields = getattr(fields, "model_fields", {}) if fields is not None else {}
        if not fields:
            click.echo("  options: none")
            continue
        click.echo("  options:")
        for option, info in fields.items():
            default = (
                "required"
                if info.default is PydanticUndefined and info.default_factory is None
                else (f"default {info.default!r}" if info.default_factory is None else "default: computed")
            )
            annotation = info.annotation
            kind_of = annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")
            about = f": {info.description}" if info.description else ""
            click.echo(f"    {option} ({kind_of}, {default}){about}")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--by", help="Pick by this rule instead of the run's `best_by`: 'weighted' or a task name.")
@click.option(
    "--write-model", type=click.Path(path_type=Path), help="Also merge the best recipe into this folder with mergekit."
)
@click.option("--force", is_flag=True, help="Let --write-model write into a folder that is not empty.")
def best(run_dir: Path, by: str | None, write_model: Path | None, force: bool) -> None:
    """Print the best recipe of RUN_DIR as mergekit YAML; optionally write the merged model.

    \b
    Reads the run and writes nothing to it, so it may look at a run that is still going.

    \b
    Examples:
      mergekit-evo best runs/demo --write-model ./merged
      mergekit-yaml runs/demo/best.yaml ./merged-again      # the same model, with mergekit alone
      mergekit-evo best runs/demo-pareto --by facts_b       # the front's best on one objective
    """
    from mergekit_evo.config import best_by_rules
    from mergekit_evo.errors import close_matches
    from mergekit_evo.files import disk_errors
    from mergekit_evo.merging import (  # mergekit is imported only to merge
        reproduce_command,
        write_candidate_model,
    )
    from mergekit_evo.ranking import chosen, guarded, score_by
    from mergekit_evo.runs import RunStore

    store, cfg = RunStore.open(run_dir, log=lambda line: click.echo(line, err=True))
    by = by or cfg.best_by
    rules = best_by_rules(cfg.tasks)
    if by not in rules:
        raise UserError(f"--by: must be 'weighted' or a task name; {close_matches(by, rules)}")
    if write_model:
        from mergekit_evo.config import check_config

        check_config(cfg)  # merging needs the models where the run found them
        check_model_target(write_model, force)
    final = (store.read_json(RunStore.BEST_HELDOUT) or {}).get("index") if by == cfg.best_by else None
    record = chosen(store.records(), by, guarded(cfg), final)  # what best.yaml holds, under the run's own rule
    if record is None:
        raise UserError(f"{run_dir} has no successfully scored candidate yet")
    click.echo(f"# candidate {record.index}, {by} {score_by(record, by):.4f}")
    click.echo(f"# exactly the scored tensors: {reproduce_command(record.seed, record.device, 'THIS.yaml')}")
    click.echo(record.merge_yaml.rstrip())
    if write_model:
        _quiet_libraries()
        with disk_errors(write_model):
            click.echo(write_candidate_model(record.merge_yaml, record.seed, record.device, write_model))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Write the page here, outside any run folder. Default: RUN_DIR/report.html, which needs the run to be "
    "stopped or finished; a running one is only read, so give --out for it.",
)
@click.option("--force", is_flag=True, help="Let --out replace an existing file that is not a mergekit-evo report.")
def report(run_dir: Path, out: Path | None, force: bool) -> None:
    """Write report.html for RUN_DIR: its plots in one file that opens offline in any browser.

    \b
    The same page every run writes when it ends: fitness of every candidate with the best so far, parents and
    plain merges; per-task scores on search, validation and held-out items; the chosen genome as a heat map and
    each gene's trajectory; the Pareto front (multi-objective runs); a cheap estimator against full scores; the
    recipe and the mergekit-yaml command that rebuilds it. It may be made at any time, also while the run goes on.
    It reads the run and writes only report.html (or --out): the record log is never touched.

    \b
    Examples:
      mergekit-evo report runs/demo                        # runs/demo/report.html, rebuilt
      mergekit-evo report runs/live --out /tmp/live.html   # a running run, only read
    """
    from mergekit_evo.files import disk_errors, write_atomically
    from mergekit_evo.report_html import report_html
    from mergekit_evo.run_view import load_view
    from mergekit_evo.runs import RunStore

    say = lambda line: click.echo(line, err=True)  # noqa: E731
    if out is None:
        store, _ = RunStore.open(run_dir, log=say)
        writer = store.writer()
        if writer is not None:
            raise UserError(
                f"{run_dir} is being written by pid {writer}, and only that process writes into it; "
                "give --out FILE to write the report elsewhere"
            )
        text = report_html(load_view(run_dir, log=say))
        store.lock(repair=False)  # the one writer for the moment it takes (a `resume` meanwhile is refused); no repair
        try:
            store.write_text(RunStore.REPORT_HTML, text)
        finally:
            store.unlock()
        click.echo(store.file(RunStore.REPORT_HTML))
        return
    check_report_target(out, force)
    text = report_html(load_view(run_dir, log=say))
    with disk_errors(out):
        write_atomically(out, text.encode())
    click.echo(out)


REPORT_MARK = b"<title>mergekit-evo run "  # what every report.html carries near its start


def check_report_target(out: Path, force: bool) -> None:
    """Where `report --out` may write: a new file, or a report it wrote before (any file with --force), in an
    existing folder that is no part of a run folder (a view never writes into a run)."""
    from mergekit_evo.runs import RunStore

    if out.is_dir():
        raise UserError(f"--out: {out} is a folder; name the HTML file to write, e.g. {out / 'report.html'}")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise UserError(f"--out: the folder {parent} does not exist; create it first, or name a file in another")
    for folder in (parent, *parent.parents):
        resolved = folder.resolve()
        for candidate in dict.fromkeys((folder, resolved)):
            if RunStore(candidate).parts():
                raise UserError(
                    f"--out: {out} is inside the run folder {candidate}; write the report outside it "
                    f"(`mergekit-evo report {candidate}` rebuilds its own report.html)"
                )
    if os.path.lexists(out) and not force:
        if out.is_symlink() or not out.is_file():
            raise UserError(f"--out: {out} is not a plain file; name another, or add --force to replace it")
        with out.open("rb") as f:
            head = f.read(4096)
        if REPORT_MARK not in head:
            raise UserError(
                f"--out: {out} exists and is not a mergekit-evo report; name another file, or add --force to replace it"
            )


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to serve on; 0 picks a free one.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind. Only this machine can reach the default, and only requests addressed to localhost names "
    "(or to this address) are answered; 0.0.0.0 opens it to the network.",
)
@click.option("--poll", type=float, default=2.0, show_default=True, help="Seconds between the page's checks.")
def dashboard(run_dir: Path, port: int, host: str, poll: float) -> None:
    """Serve a live page of RUN_DIR (or of every run in a folder) that follows the run as candidates are recorded.

    \b
    The page shows the report's views and redraws them whenever the run directory changes; it only reads the
    run, so start it beside a running `mergekit-evo run`, or after. Given a folder of runs, the first page lists
    them with their best-so-far curves side by side. Ctrl-C stops it.

    \b
    Examples:
      mergekit-evo dashboard runs/demo                     # then open http://127.0.0.1:8765/
      mergekit-evo dashboard runs/ --port 9000             # every run under runs/
      ssh -L 8765:127.0.0.1:8765 gpu-box                   # a remote run: forward the port, keep the default host
    """
    from mergekit_evo.dashboard import serve

    if poll <= 0:
        raise UserError("--poll: give a number of seconds above 0, e.g. --poll 2")
    serve(run_dir, host, port, log=lambda line: click.echo(line, err=True), poll_ms=int(poll * 1000))


def check_model_target(folder: Path, force: bool) -> None:
    """A folder a model may be written into: new, empty, or (with --force) not empty; and writable. Checked before any
    merge work, so a wrong target costs nothing."""
    from mergekit_evo.files import disk_errors

    if folder.exists() and not folder.is_dir():
        raise UserError(f"--write-model: {folder} is a file; name a folder for the merged model")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise UserError(f"--write-model: {folder} is not empty; name a new folder, or add --force to write over it")
    with disk_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".mergekit-evo-write-test"
        probe.write_bytes(b"")
        probe.unlink()


def main(argv: list[str] | None = None) -> None:
    try:
        apply_process_defaults()  # before any command imports torch (mergekit_evo/threads.py says why)
        cli.main(args=argv, standalone_mode=False)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except Interrupted as e:
        click.echo(str(e), err=True)
        sys.exit(130)
    except (AllFailed, RunFailure) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    except click.exceptions.Abort as e:
        if e.__cause__ is not None and not isinstance(e.__cause__, KeyboardInterrupt):
            raise e.__cause__ from None  # click turns any EOFError into Abort; one that is not Ctrl-D is a bug to show
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as e:  # a bad flag or argument: one line, as every other mistake is
        where = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        click.echo(f"error: {e.format_message()}{where}", err=True)
        sys.exit(2)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted; `mergekit-evo resume RUN_DIR` continues a run", err=True)
        sys.exit(130)
