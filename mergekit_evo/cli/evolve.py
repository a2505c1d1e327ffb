"""`mergekit-evo evolve`: mergekit-evolve's command line, run by mergekit-evo (run/mergekit_evolve.py maps it)."""

from __future__ import annotations

from pathlib import Path

import click

from mergekit_evo.cli.common import cli, quiet_libraries, start_or_resume


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
    from mergekit_evo.config.evolve_compat import EvolveFlags
    from mergekit_evo.run.mergekit_evolve import evolve_config, holds_run, run_folder, write_best_config

    parsed = EvolveFlags(storage_path=storage_path, **flags)
    config = evolve_config(genome_config, parsed)
    click.echo("mergekit-evolve flags: " + "; ".join(parsed.mapped), err=True)
    from mergekit_evo.run.evolution import Evolution

    quiet_libraries()
    run_dir = run_folder(storage_path)
    progress = not no_progress
    if holds_run(storage_path):
        click.echo(f"{run_dir} holds this run already: resuming it", err=True)
        start_or_resume(lambda: Evolution.resume(run_dir, log=click.echo), run_dir, progress=progress)
    else:
        start_or_resume(lambda: Evolution.start(config, run_dir, log=click.echo), run_dir, progress=progress)
    target = write_best_config(storage_path)
    if target is not None:
        click.echo(f"best merge recipe: {target} (as mergekit-evolve wrote it; `mergekit-yaml {target} OUT` builds it)")
