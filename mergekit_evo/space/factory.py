"""Which genome a run searches: the data-flow genome when the config asks for one (`genome.dfs`), else the
parameter-space genome. Above both (`genome.py`, `dataflow.py`), so neither imports the other's maker."""

from __future__ import annotations

from mergekit_evo.config import EvolveConfig
from mergekit_evo.space.dataflow import DataFlowSpace
from mergekit_evo.space.genome import GenomeSpace


def genome_space(config: EvolveConfig, relax_choices: bool = False) -> GenomeSpace | DataFlowSpace:
    """The run's genome; both kinds map [0,1]^d to a mergekit recipe. `relax_choices`: a categorical gene (the
    merge method) as one gene per option, for optimizers that say `relaxes_choices` (the run decides)."""
    if config.genome.dfs is not None:
        return DataFlowSpace(config)
    return GenomeSpace(config, relax_choices)
