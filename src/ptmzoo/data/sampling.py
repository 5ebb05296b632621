"""Which samples go into which step: a resumable, rank-aware global batch sampler.

The training stream is a concatenation of random permutations of the dataset, one per epoch,
seeded by (seed, epoch). Optimizer step ``s`` consumes stream positions [s*B, (s+1)*B) for a
global batch B, so no sample is dropped at an epoch's end and any step can be reached without
touching the data before it (exact resume). Within a step, micro-batch ``m`` of process ``r``
is the slice starting at (m * world + r) * micro: the union over processes and micro-batches is
the same global batch whatever the world size.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError


class StepSampler:
    def __init__(self, num_samples: int, global_batch: int, micro_batch: int, rank: int = 0,
                 world_size: int = 1, seed: int = 0, start_step: int = 0, max_steps: int | None = None,
                 shuffle: bool = True):
        if num_samples < 1:
            raise UserError("the training data has no samples (is the corpus shorter than one sequence?)")
        if global_batch % (micro_batch * world_size):
            raise UserError(f"train.batch_size ({global_batch}) must be a multiple of micro_batch_size x processes "
                            f"({micro_batch} x {world_size})")
        self.num_samples = num_samples
        self.global_batch = global_batch
        self.micro_batch = micro_batch
        self.accumulation = global_batch // (micro_batch * world_size)
        self.rank, self.world_size = rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.start_step, self.max_steps = start_step, max_steps
        self._perm_epoch, self._perm = -1, None

    def key(self, position: int) -> tuple[int, int]:
        """(sample index, epoch) at a position of the stream."""
        epoch, offset = divmod(position, self.num_samples)
        if not self.shuffle:
            return offset, epoch
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
            self._perm_epoch = epoch
        return int(self._perm[offset]), epoch

    def micro_batches(self, step: int) -> list[list[tuple[int, int]]]:
        base = step * self.global_batch
        batches = []
        for m in range(self.accumulation):
            start = base + (m * self.world_size + self.rank) * self.micro_batch
            batches.append([self.key(p) for p in range(start, start + self.micro_batch)])
        return batches

    def __iter__(self):
        step = self.start_step
        while self.max_steps is None or step < self.max_steps:
            yield from self.micro_batches(step)
            step += 1

    def __len__(self) -> int:
        steps = (self.max_steps or 0) - self.start_step
        return max(0, steps) * self.accumulation


def eval_batches(num_samples: int, global_batch: int, rank: int, world_size: int, limit: int | None):
    """Evaluation batches of (index, 0) keys: the first ``limit`` global batches in order, each
    split evenly across processes, so every world size evaluates the very same samples."""
    total = num_samples if limit is None else min(num_samples, limit * global_batch)
    batches = []
    for start in range(0, total, global_batch):
        chunk = list(range(start, min(start + global_batch, total)))
        per_rank = -(-len(chunk) // world_size)
        mine = chunk[rank * per_rank : (rank + 1) * per_rank]
        if mine:
            batches.append([(i, 0) for i in mine])
    return batches
