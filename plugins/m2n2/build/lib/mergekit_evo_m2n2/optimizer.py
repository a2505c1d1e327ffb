"""M2N2 over mergekit-evo's genomes: an archive of recipes, resource competition, attraction, split-point crossover.

After Abrantes, Lange and Sakana AI, "Competition and Attraction Improve Model Fusion" (2025). The paper evolves
model weights; here the archive holds recipes (points of the genome's unit cube), so every member is a plain
mergekit YAML. Three ideas carry over unchanged:

- **Resource competition.** An item is a resource shared by the archive members that solve it. A member's fitness
  is the sum over items of s_ij / (sum over the archive of s_kj)^alpha: solving an item few others solve is worth
  more, so members that are good at different things all survive (diversity without a distance measure). After each
  generation the archive keeps the `archive_size` members with the highest competition fitness, new ones included.
- **Attraction.** The first parent is drawn in proportion to its competition fitness; the second in proportion to
  how much it complements the first: the sum over items of max(s_Bj - s_Aj, 0) / (sum_k s_kj)^alpha, the scarce
  items B solves and A does not.
- **Split-point crossover.** A split depth p and a mixing weight w are drawn; genes acting on layers above p take
  w*A + (1-w)*B, those below take (1-w)*A + w*B (the paper's split of the layers, on the genome's genes: each gene's
  depth comes from the genome, `depths`). Genes that span all layers (a single layer group, the method gene) take
  the side of their position in the genome. An optional Gaussian mutation keeps the archive from closing in on
  itself.

It needs each candidate's per-item scores: it sets `wants_item_scores`, and the run hands it the score matrix of the
items every candidate is scored on (the estimator's selection) with each `tell`. The first generation is the start
point and uniform random points. Everything random comes from one numpy Generator kept in the optimizer and seeded
from the run's seed, so replaying the run's records (how a run resumes) rebuilds the same archive and sequence.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mergekit_evo import Optimizer

EPS = 1e-9


class M2N2(Optimizer):
    """M2N2: an archive with resource competition, attraction-based mate choice and split-point crossover."""

    wants_item_scores = True

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")

        archive_size: int = Field(8, ge=2, description="members kept after each generation")
        alpha: float = Field(1.0, ge=0, description="how strongly a shared item's value is divided among its solvers")
        mutation: float = Field(
            0.1, ge=0, le=1, description="std of the Gaussian added to a child's genes (0: crossover alone)"
        )
        mutation_rate: float = Field(0.3, ge=0, le=1, description="share of a child's genes mutated")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rng = np.random.default_rng(self.seed)
        self.archive_x = np.empty((0, self.dim))
        self.archive_items = np.empty((0, 0))
        self.generation = 0
        order = np.arange(self.dim) / max(self.dim - 1, 1)  # a gene without a depth takes its place in the genome
        self.split_depths = np.where(np.isfinite(self.depths), self.depths, order)

    # ------------------------------------------------------------------------------ competition and attraction

    def _capacity(self, items: np.ndarray) -> np.ndarray:
        """Each item's divisor: how much of it the archive already solves, to the power alpha."""
        return np.maximum(items.sum(axis=0), EPS) ** self.options.alpha

    def competition(self, items: np.ndarray) -> np.ndarray:
        """Each member's share of the items it solves (the resource-competition fitness)."""
        return (items / self._capacity(items)).sum(axis=1)

    def attraction(self, first: int, items: np.ndarray) -> np.ndarray:
        """How much each member complements member `first`: the scarce items it solves and `first` does not."""
        gain = np.maximum(items - items[first], 0.0) / self._capacity(items)
        scores = gain.sum(axis=1)
        scores[first] = 0.0
        return scores

    def _draw(self, weights: np.ndarray, exclude: int | None = None) -> int:
        weights = np.maximum(np.asarray(weights, dtype=float), 0.0)
        if exclude is not None:
            weights[exclude] = 0.0
        if weights.sum() <= 0:  # nothing to prefer: uniformly, among the allowed
            weights = np.ones(len(weights))
            if exclude is not None:
                weights[exclude] = 0.0
        return int(self.rng.choice(len(weights), p=weights / weights.sum()))

    # ------------------------------------------------------------------------------ ask and tell

    def child(self) -> np.ndarray:
        items = self.archive_items
        first = self._draw(self.competition(items))
        second = self._draw(self.attraction(first, items), exclude=first)
        a, b = self.archive_x[first], self.archive_x[second]
        split, w = self.rng.random(), self.rng.random()
        below = self.split_depths < split
        x = np.where(below, (1 - w) * a + w * b, w * a + (1 - w) * b)
        if self.options.mutation > 0:
            mutated = self.rng.random(self.dim) < self.options.mutation_rate
            x = x + mutated * self.rng.normal(0.0, self.options.mutation, self.dim)
        return np.clip(x, 0.0, 1.0)

    def ask(self) -> np.ndarray:
        if len(self.archive_x) < 2:  # no archive to mate yet: the start point and random points
            xs = self.rng.random((self.population, self.dim))
            if self.generation == 0:
                xs[0] = self.x0
        else:
            xs = np.array([self.child() for _ in range(self.population)])
        self.generation += 1
        return xs

    def tell(self, xs: np.ndarray, fitness: np.ndarray, item_scores: np.ndarray | None = None) -> None:
        """Failed candidates (NaN) never enter the archive; the rest compete with it for its places."""
        if item_scores is None:
            raise ValueError("M2N2 learns from per-item scores: tell it item_scores (the run does)")
        items = np.asarray(item_scores, dtype=float)
        scored = np.isfinite(items).all(axis=1) & np.isfinite(np.asarray(fitness, dtype=float)).all(axis=1)
        pool_x = np.vstack([self.archive_x, np.asarray(xs, dtype=float)[scored]])
        if len(self.archive_items):
            pool_items = np.vstack([self.archive_items, items[scored]])
        else:
            pool_items = items[scored]
        if len(pool_x) > self.options.archive_size:
            keep = np.argsort(-self.competition(pool_items), kind="stable")[: self.options.archive_size]
            keep.sort()
            pool_x, pool_items = pool_x[keep], pool_items[keep]
        self.archive_x, self.archive_items = pool_x, pool_items
