"""The training data stream: index batches -> mapped, augmented batches, with bad samples skipped and counted.

Reproducibility: the index batches come from ``TrainingSampler`` + ``AspectRatioGroupedBatchSampler`` (a pure
function of seed, rank and world size), and each sample's augmentation uses its own generator seeded by
(seed, rank, iteration, position in batch). So the batches do not depend on the number of worker processes,
and starting at iteration k (resume) gives exactly the batches an uninterrupted run sees from k on.

Bad data (missing / unreadable / truncated image, size mismatch, no box left after clipping) is logged by file
name and replaced by another image of the same aspect group drawn from a seeded generator (deterministic too);
``TrainDataLoader.num_skipped`` / ``.skipped_files`` report what was skipped.
"""

import collections
import functools
import itertools
import logging
import random
import signal
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from .detection_utils import BadDataError
from .samplers import AspectRatioGroupedBatchSampler, TrainingSampler

logger = logging.getLogger(__name__)

# After this many consecutive failed replacements for one slot, the data is broken beyond skipping.
_MAX_ATTEMPTS = 100


class TrainBatchDataset(torch.utils.data.IterableDataset):
    """Yields (iteration, batch: List[dict], skipped: List[(file_name, reason)] since the previous yield)
    forever, starting at ``start_iter``. Worker w of W produces iterations w, w + W, ... (DataLoader
    interleaves workers round-robin, so the main process sees them in order)."""

    def __init__(self, dataset_dicts: Sequence[dict], mapper: Callable, batch_size: int, seed: int, rank: int,
                 world_size: int, group_ids: Optional[Sequence[int]] = None, shuffle: bool = True,
                 start_iter: int = 0):
        self.dicts, self.mapper, self.batch_size = dataset_dicts, mapper, batch_size
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle
        self.group_ids = None if group_ids is None else np.asarray(group_ids)
        self.start_iter = start_iter
        groups = np.zeros(len(dataset_dicts), dtype=np.int64) if self.group_ids is None else self.group_ids
        self._members = {int(g): np.flatnonzero(groups == g) for g in np.unique(groups)}
        self._groups = groups

    def index_batches(self):
        """Infinite iterator of (iteration, [dataset indices]) for this rank, from ``start_iter`` on."""
        sampler = TrainingSampler(len(self.dicts), self.shuffle, self.seed, rank=self.rank,
                                  world_size=self.world_size)
        batches = AspectRatioGroupedBatchSampler(sampler, self.batch_size, self.group_ids)
        return zip(itertools.count(self.start_iter), itertools.islice(iter(batches), self.start_iter, None))

    def _rng(self, it: int, pos: int, attempt: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.rank, it, pos, attempt])

    def _try_map(self, idx: int, rng: np.random.Generator, skipped: List, known_bad: Dict[int, str]):
        d = self.dicts[idx]
        fname = d.get("file_name", f"<index {idx}>")
        if idx in known_bad:  # a bad file stays bad: do not read it again, but still count the skip
            skipped.append((fname, known_bad[idx]))
            return None
        try:
            out = self.mapper(d, rng)
            reason = None if out is not None else "no usable box left after clipping to the image"
        except (BadDataError, OSError) as e:
            # Only file-level failures are remembered: an empty-after-augmentation result depends on the rng.
            out, reason = None, str(e)
            known_bad[idx] = reason
        if out is None:
            logger.warning(f"Skipping training image {fname}: {reason}")
            skipped.append((fname, reason))
        return out

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        skipped, known_bad = [], {}
        for it, idx_batch in self.index_batches():
            if (it - self.start_iter) % nw != wid:
                continue
            batch = []
            for pos, idx in enumerate(idx_batch):
                out, attempt = self._try_map(idx, self._rng(it, pos, 0), skipped, known_bad), 0
                while out is None:
                    attempt += 1
                    if attempt > _MAX_ATTEMPTS:
                        raise RuntimeError(
                            f"Training data: {_MAX_ATTEMPTS} replacement images in a row were unusable "
                            f"(last: {skipped[-1][0]}: {skipped[-1][1]}); check the dataset."
                        )
                    rng = self._rng(it, pos, attempt)
                    members = self._members[int(self._groups[idx])]
                    cand = int(members[rng.integers(len(members))])
                    out = self._try_map(cand, rng, skipped, known_bad)
                batch.append(out)
            yield it, batch, skipped
            skipped = []


def _identity(x):
    return x


def _worker_init(worker_id: int, seed: int, rank: int) -> None:
    # A cluster signals every process of the job; the trainer saves and then stops its workers itself.
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    # Our augmentations use explicit generators; this seeds the global RNGs for any other code in the worker.
    s = int(np.random.SeedSequence([seed, rank, worker_id]).generate_state(1)[0])
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


class TrainDataLoader:
    """Infinite iterable of per-rank batches (List[dict]); wraps a torch DataLoader over a TrainBatchDataset.

    Resume: call ``set_start_iter(k)`` (or build with ``start_iter=k``) before iterating; the first batch is
    then the one an uninterrupted run would use at iteration k.
    Bad-data statistics: ``num_skipped`` (skip events), ``skipped_files`` (Counter file -> times skipped),
    summarised in the log at most every ``log_period_s`` seconds.
    """

    def __init__(self, dataset: TrainBatchDataset, num_workers: int = 0, log_period_s: float = 60.0):
        if num_workers < 0:
            raise ValueError(f"DATALOADER.NUM_WORKERS must be >= 0, got {num_workers}")
        self.dataset, self.num_workers, self.log_period_s = dataset, num_workers, log_period_s
        self.num_skipped = 0
        self.skipped_files = collections.Counter()
        self._last_log = -float("inf")

    @property
    def start_iter(self) -> int:
        return self.dataset.start_iter

    def set_start_iter(self, start_iter: int) -> None:
        if start_iter < 0:
            raise ValueError(f"start_iter must be >= 0, got {start_iter}")
        self.dataset.start_iter = int(start_iter)

    def stats(self) -> dict:
        return {"num_skipped": self.num_skipped, "num_skipped_files": len(self.skipped_files)}

    def _record(self, skipped) -> None:
        for fname, _ in skipped:
            self.skipped_files[fname] += 1
        self.num_skipped += len(skipped)
        now = time.monotonic()
        if now - self._last_log >= self.log_period_s:
            self._last_log = now
            fname, reason = skipped[-1]
            logger.warning(
                f"Training data: skipped {self.num_skipped} samples so far ({len(self.skipped_files)} distinct "
                f"files); latest: {fname}: {reason}"
            )

    def __iter__(self):
        d = self.dataset
        loader = torch.utils.data.DataLoader(
            d,
            batch_size=None,
            num_workers=self.num_workers,
            collate_fn=_identity,
            worker_init_fn=functools.partial(_worker_init, seed=d.seed, rank=d.rank),
            # Own generator: torch draws the workers' base seed from it, so iterating never consumes the global
            # torch RNG (which would make a resumed run's model randomness differ from an uninterrupted run's).
            generator=torch.Generator().manual_seed(d.seed),
        )
        for _, batch, skipped in loader:
            if skipped:
                self._record(skipped)
            yield batch
