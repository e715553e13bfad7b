"""Matcher: assigns each prediction (anchor or proposal) to its best ground-truth box and labels it by IoU."""

from typing import List, Sequence, Tuple

import torch
from torch import Tensor


class Matcher:
    """Label predictions by the IoU with their best-matching ground truth.

    ``thresholds`` [t1, ..., tk] (increasing) cut IoU into k+1 intervals [-inf, t1), [t1, t2), ..., [tk, inf) whose
    labels are ``labels`` (k+1 values in {-1 ignore, 0 negative, 1 positive}). E.g. the RPN uses thresholds
    [0.3, 0.7] with labels [0, -1, 1].

    ``allow_low_quality_matches``: also label positive, for each ground truth, every prediction that has its highest
    IoU (ties included), even if below the top threshold. Otherwise a small or oddly shaped object that no anchor
    covers well would never get a positive (Faster R-CNN, sec. 3.1.2).
    """

    def __init__(self, thresholds: Sequence[float], labels: Sequence[int], allow_low_quality_matches: bool = False):
        thresholds = [float(t) for t in thresholds]
        labels = [int(lb) for lb in labels]
        if any(a > b for a, b in zip(thresholds[:-1], thresholds[1:])):
            raise ValueError(f"Matcher thresholds must be increasing, got {thresholds}")
        if len(labels) != len(thresholds) + 1:
            raise ValueError(
                f"Matcher needs one label more than thresholds: got thresholds {thresholds} and labels {labels}"
            )
        if any(lb not in (-1, 0, 1) for lb in labels):
            raise ValueError(f"Matcher labels must be -1 (ignore), 0 (negative) or 1 (positive), got {labels}")
        self.thresholds: List[float] = [-float("inf")] + thresholds + [float("inf")]
        self.labels = labels
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: Tensor) -> Tuple[Tensor, Tensor]:
        """``[G, P]`` IoU of G ground truths with P predictions -> (matches ``[P]`` int64 index of the best ground
        truth, match_labels ``[P]`` int8). With G == 0 every prediction gets index 0 and the lowest interval's label.
        """
        if match_quality_matrix.dim() != 2:
            raise ValueError(f"match_quality_matrix must be [G, P], got {tuple(match_quality_matrix.shape)}")
        num_preds = match_quality_matrix.shape[1]
        device = match_quality_matrix.device
        if match_quality_matrix.shape[0] == 0 or num_preds == 0:
            matches = torch.zeros(num_preds, dtype=torch.int64, device=device)
            match_labels = torch.full((num_preds,), self.labels[0], dtype=torch.int8, device=device)
            return matches, match_labels

        matched_vals, matches = match_quality_matrix.max(dim=0)
        # Start as "ignore": a NaN IoU falls in no interval and must not become a positive or a negative.
        match_labels = torch.full((num_preds,), -1, dtype=torch.int8, device=device)
        for label, low, high in zip(self.labels, self.thresholds[:-1], self.thresholds[1:]):
            in_interval = (matched_vals >= low) & (matched_vals < high)
            match_labels[in_interval] = label

        if self.allow_low_quality_matches:
            # For each ground truth, the predictions that reach its best IoU (ties included) become positives.
            # Their match index stays the overall best ground truth, as in detectron2 and torchvision.
            # A ground truth that overlaps nothing (best IoU 0) is skipped: otherwise every prediction would tie
            # at IoU 0 and all of them would become positives.
            best_per_gt = match_quality_matrix.max(dim=1, keepdim=True).values
            is_best = ((match_quality_matrix == best_per_gt) & (best_per_gt > 0)).any(dim=0)
            match_labels[is_best] = 1
        return matches, match_labels
