"""The commands that search: `run` (a config), `resume` (a run folder) and `demo` (the tiny world's experiment)."""

from __future__ import annotations

from pathlib import Path

import click

from mergekit_evo.cli.common import cli, quiet_libraries, start_or_resume
from mergekit_evo.plugin.errors import UserError


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
    from mergekit_evo.store.runs import RunStore

    overrides = RunOverrides.parse(max_evaluations=max_evaluations, seed=seed)
    if config.is_dir() and RunStore(config).parts():
        raise UserError(f"{config} is a run directory, not a config file; `mergekit-evo resume {config}` continues it")
    cfg = overrides.apply(load_config(config))  # first, so a config error is told before torch and mergekit load
    from mergekit_evo.run.evolution import Evolution

    quiet_libraries()
    run_dir = run_dir or cfg.run_dir or Path("runs") / config.stem
    start_or_resume(lambda: Evolution.start(cfg, run_dir, log=click.echo), run_dir, progress=not no_progress)


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
    from mergekit_evo.run.evolution import Evolution

    quiet_libraries()
    start_or_resume(
        lambda: Evolution.resume(run_dir, log=click.echo, accept_inputs=accept_inputs),
        run_dir,
        progress=not no_progress,
    )


@cli.command()
@click.option(
    "--run-dir", type=click.Path(path_type=Path), help="Default: runs/demo, or runs/demo-pareto with --multi-objective."
)
@click.option(
    "--max-evaluations",
    type=int,
    help="Default: 600, 75 generations of 8 (checked after each generation); 296 with --multi-objective.",
)
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
    from mergekit_evo.demo.configs import DEMO_EVALUATIONS, PARETO_DEMO_EVALUATIONS, cross_skill_config
    from mergekit_evo.demo.tiny_world import ensure_world
    from mergekit_evo.demo.tiny_world.build import format_table, world_manifest
    from mergekit_evo.plugin.manager import registry
    from mergekit_evo.run.evolution import Evolution
    from mergekit_evo.store.runs import RunStore

    quiet_libraries()
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
        default = PARETO_DEMO_EVALUATIONS if multi_objective else DEMO_EVALUATIONS
        budget = default if max_evaluations is None else max_evaluations
        cfg = parse_config(cross_skill_config(world, budget, optimizer, objectives=objectives), world)
        return Evolution.start(cfg, run_dir, log=click.echo)

    start_or_resume(make_evolution, run_dir)
