"""Index samplers: an infinite shuffling sampler sharded across ranks for training, a finite one that gives
every image to exactly one rank for inference, and aspect-ratio grouping of indices into batches.

Everything here works on indices only (no image is read), so the whole training order is a pure function of
(dataset size, seed, rank, world size) and can be fast-forwarded to any iteration for resume.
"""

import itertools
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch

from det_dcn.utils import comm
from det_dcn.utils.seeding import resolve_seed


class TrainingSampler:
    """Infinite stream of dataset indices for this rank.

    The global stream is the concatenation of seeded permutations of range(size) (or range(size) repeated when
    ``shuffle`` is False), identical on all ranks; rank r takes positions r, r + W, r + 2W, ... of it, so the
    ranks' shards within each pass are disjoint and together cover the dataset. ``start`` skips that many of
    this rank's samples (resume without replaying them).
    """

    def __init__(self, size: int, shuffle: bool = True, seed: Optional[int] = None, start: int = 0,
                 rank: Optional[int] = None, world_size: Optional[int] = None):
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"TrainingSampler: size must be a positive int, got {size!r} (empty dataset?)")
        if start < 0:
            raise ValueError(f"TrainingSampler: start must be >= 0, got {start}")
        self.size, self.shuffle, self.start = size, shuffle, int(start)
        self.seed = resolve_seed(seed)
        self.rank = comm.get_rank() if rank is None else rank
        self.world_size = comm.get_world_size() if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"TrainingSampler: rank {self.rank} not in [0, world_size={self.world_size})")

    def _global_stream(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed)
        while True:
            if self.shuffle:
                yield from torch.randperm(self.size, generator=g).tolist()
            else:
                yield from range(self.size)

    def __iter__(self) -> Iterator[int]:
        first = self.rank + self.start * self.world_size
        return itertools.islice(self._global_stream(), first, None, self.world_size)


class InferenceSampler:
    """Finite: rank r gets the contiguous slice r of range(size) split into ``world_size`` near-equal parts, so
    every index is used by exactly one rank, once, in order (no padding with repeats, which would bias AP)."""

    def __init__(self, size: int, rank: Optional[int] = None, world_size: Optional[int] = None):
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"InferenceSampler: size must be an int >= 0, got {size!r}")
        self.size = size
        rank = comm.get_rank() if rank is None else rank
        world_size = comm.get_world_size() if world_size is None else world_size
        base, extra = divmod(size, world_size)
        begin = rank * base + min(rank, extra)
        self.indices = range(begin, begin + base + (1 if rank < extra else 0))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class AspectRatioGroupedBatchSampler:
    """Groups an index stream into batches of ``batch_size`` indices with the same aspect group (0: landscape
    w >= h, 1: portrait) so padding wastes little; a batch is emitted as soon as one group is full.

    Deterministic for a deterministic ``sampler``. With ``group_ids`` None it just chunks the stream.
    """

    def __init__(self, sampler, batch_size: int, group_ids: Optional[Sequence[int]] = None):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        self.sampler, self.batch_size = sampler, batch_size
        self.group_ids = None if group_ids is None else np.asarray(group_ids)

    def __iter__(self) -> Iterator[List[int]]:
        buckets = {}
        for idx in self.sampler:
            g = 0 if self.group_ids is None else int(self.group_ids[idx])
            bucket = buckets.setdefault(g, [])
            bucket.append(idx)
            if len(bucket) == self.batch_size:
                yield list(bucket)
                bucket.clear()


def aspect_ratio_group_ids(dataset_dicts: Sequence[dict]) -> np.ndarray:
    """0 for landscape / square images (width >= height), 1 for portrait, from the dicts' width/height."""
    return np.asarray([0 if d["width"] >= d["height"] else 1 for d in dataset_dicts], dtype=np.int64)
