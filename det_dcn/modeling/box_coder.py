"""Box2BoxTransform: the (dx, dy, dw, dh) parameterisation of R-CNN box regression."""

import math
from typing import Sequence

import torch
from torch import Tensor

# Largest log-scale change a delta may apply: a box can grow at most 1000/16 times per side. Without the clamp an
# early, untrained regressor produces exp(large) = inf boxes.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class Box2BoxTransform:
    """Encode a target box relative to a source box, and decode deltas back into boxes.

    For source box (centre x, y, size w, h) and target (x', y', w', h')::

        dx = wx * (x' - x) / w      dy = wy * (y' - y) / h
        dw = ww * log(w' / w)       dh = wh * log(h' / h)

    ``weights`` = (wx, wy, ww, wh): (1, 1, 1, 1) for the RPN, (10, 10, 5, 5) for Fast R-CNN, which rescales the
    targets to roughly unit variance.
    """

    def __init__(self, weights: Sequence[float], scale_clamp: float = DEFAULT_SCALE_CLAMP):
        if len(weights) != 4 or any(w <= 0 for w in weights):
            raise ValueError(f"Box2BoxTransform weights must be 4 positive numbers (wx, wy, ww, wh), got {weights}")
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp

    def get_deltas(self, src_boxes: Tensor, target_boxes: Tensor) -> Tensor:
        """``[N, 4]`` source and target XYXY boxes -> ``[N, 4]`` deltas that turn each source into its target."""
        src_w = src_boxes[:, 2] - src_boxes[:, 0]
        src_h = src_boxes[:, 3] - src_boxes[:, 1]
        src_x = src_boxes[:, 0] + 0.5 * src_w
        src_y = src_boxes[:, 1] + 0.5 * src_h

        tgt_w = target_boxes[:, 2] - target_boxes[:, 0]
        tgt_h = target_boxes[:, 3] - target_boxes[:, 1]
        tgt_x = target_boxes[:, 0] + 0.5 * tgt_w
        tgt_y = target_boxes[:, 1] + 0.5 * tgt_h

        wx, wy, ww, wh = self.weights
        dx = wx * (tgt_x - src_x) / src_w
        dy = wy * (tgt_y - src_y) / src_h
        dw = ww * torch.log(tgt_w / src_w)
        dh = wh * torch.log(tgt_h / src_h)
        return torch.stack((dx, dy, dw, dh), dim=1)

    def apply_deltas(self, deltas: Tensor, boxes: Tensor) -> Tensor:
        """Decode ``[N, K*4]`` deltas (K boxes per row, e.g. one per class) against ``[N, 4]`` boxes -> ``[N, K*4]``."""
        deltas = deltas.float()
        boxes = boxes.to(deltas.dtype)
        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights

        wx, wy, ww, wh = self.weights
        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = (deltas[:, 2::4] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.scale_clamp)

        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        pred_w = torch.exp(dw) * widths[:, None]
        pred_h = torch.exp(dh) * heights[:, None]

        x1 = pred_ctr_x - 0.5 * pred_w
        y1 = pred_ctr_y - 0.5 * pred_h
        x2 = pred_ctr_x + 0.5 * pred_w
        y2 = pred_ctr_y + 0.5 * pred_h
        # Interleave back to [x1, y1, x2, y2] per box.
        return torch.stack((x1, y1, x2, y2), dim=2).reshape(deltas.shape)
