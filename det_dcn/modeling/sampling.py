"""Balanced sampling of positives and negatives for the RPN and the RoI heads."""

from typing import Tuple

import torch
from torch import Tensor


def check_sampling_config(prefix: str, batch_size_per_image: int, positive_fraction: float) -> None:
    """Fail at build time, naming the config key (``prefix`` is e.g. "MODEL.RPN"), on a sampling setting that
    cannot work."""
    if batch_size_per_image < 1:
        raise ValueError(f"{prefix}.BATCH_SIZE_PER_IMAGE must be >= 1, got {batch_size_per_image}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"{prefix}.POSITIVE_FRACTION must be in [0, 1], got {positive_fraction}")


def subsample_labels(
    labels: Tensor, num_samples: int, positive_fraction: float, bg_label: int
) -> Tuple[Tensor, Tensor]:
    """Pick at most ``num_samples`` elements, at most ``positive_fraction`` of them positive, at random.

    Args:
        labels: ``[N]`` int; -1 = ignore, ``bg_label`` = negative, any other value = positive.
        num_samples: total to sample; when positives run short, negatives fill the rest.
        positive_fraction: the target share of positives, in [0, 1].
        bg_label: the negative (background) label: 0 for the RPN, NUM_CLASSES for the RoI heads.

    Returns:
        (pos_idx, neg_idx): int64 indices into ``labels``; ``len(pos_idx) + len(neg_idx) <= num_samples``.
    """
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    positive = torch.nonzero((labels != -1) & (labels != bg_label)).squeeze(1)
    negative = torch.nonzero(labels == bg_label).squeeze(1)

    num_pos = min(int(num_samples * positive_fraction), positive.numel())
    num_neg = min(num_samples - num_pos, negative.numel())

    # randperm instead of multinomial: uniform without replacement, and deterministic under a fixed seed.
    perm_pos = torch.randperm(positive.numel(), device=positive.device)[:num_pos]
    perm_neg = torch.randperm(negative.numel(), device=negative.device)[:num_neg]
    return positive[perm_pos], negative[perm_neg]
