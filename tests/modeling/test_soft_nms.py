"""soft_nms (TEST.SOFT_NMS): a hand-worked case, a plain-Python reference on random boxes, and its refusal to trace."""

import math

import pytest
import torch

from det_dcn.modeling.nms import soft_nms


def reference_soft_nms(boxes, scores, classes, method, sigma, iou_threshold, min_score=1e-4):
    """Bodla et al.'s algorithm written out with Python floats, one class at a time."""
    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    kept = []
    for cls in sorted(set(classes)):
        pool = {i: scores[i] for i in range(len(scores)) if classes[i] == cls}
        while pool:
            best = max(pool, key=lambda i: (pool[i], -i))
            score = pool.pop(best)
            if score < min_score:
                break
            kept.append((best, score))
            for i in pool:
                o = iou(boxes[best], boxes[i])
                if method == "linear":
                    pool[i] *= (1.0 - o) if o > iou_threshold else 1.0
                else:
                    pool[i] *= math.exp(-o * o / sigma)
    kept.sort(key=lambda t: -t[1])
    return kept


def test_soft_nms_by_hand():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30], [0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    classes = torch.tensor([0, 0, 0, 1])
    # class 0: box 0 kept at 0.9; box 1 (IoU 0.5 with it) decays, box 2 (IoU 0) does not; class 1 untouched
    keep, kept_scores = soft_nms(boxes, scores, classes, "linear", 0.5, 0.3)
    assert keep.tolist() == [0, 2, 3, 1]
    torch.testing.assert_close(kept_scores, torch.tensor([0.9, 0.7, 0.6, 0.8 * 0.5]))
    keep, kept_scores = soft_nms(boxes, scores, classes, "gaussian", 0.5, 0.3)
    assert keep.tolist() == [0, 2, 3, 1]
    torch.testing.assert_close(kept_scores, torch.tensor([0.9, 0.7, 0.6, 0.8 * math.exp(-0.25 / 0.5)]))
    # linear below its threshold: IoU 0.5 <= 0.6 leaves box 1's score alone
    assert soft_nms(boxes, scores, classes, "linear", 0.5, 0.6)[1].tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6])


def test_soft_nms_drops_a_box_decayed_to_nothing_and_takes_no_boxes():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    keep, kept_scores = soft_nms(boxes, torch.tensor([0.9, 0.8]), torch.tensor([0, 0]), "linear", 0.5, 0.3)
    assert keep.tolist() == [0] and kept_scores.tolist() == pytest.approx([0.9])  # IoU 1: 0.8 * 0 dropped
    keep, kept_scores = soft_nms(boxes[:0], torch.zeros(0), torch.zeros(0, dtype=torch.long), "gaussian", 0.5, 0.3)
    assert keep.shape == (0,) and kept_scores.shape == (0,)


@pytest.mark.parametrize("method", ["linear", "gaussian"])
@pytest.mark.parametrize("seed", [0, 1])
def test_soft_nms_matches_a_plain_reference(method, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(80, 2, generator=g, dtype=torch.float64) * 60
    wh = torch.rand(80, 2, generator=g, dtype=torch.float64) * 30 + 2
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(80, generator=g, dtype=torch.float64)
    classes = torch.randint(0, 3, (80,), generator=g)
    keep, kept_scores = soft_nms(boxes, scores, classes, method, 0.5, 0.3)
    expected = reference_soft_nms(boxes.tolist(), scores.tolist(), classes.tolist(), method, 0.5, 0.3)
    assert keep.tolist() == [i for i, _ in expected]
    torch.testing.assert_close(kept_scores, torch.tensor([s for _, s in expected], dtype=torch.float64))
    assert len(expected) > 40  # decayed, not suppressed: most boxes stay


def test_soft_nms_refuses_to_trace_and_names_the_key():
    class Model(torch.nn.Module):
        def forward(self, boxes, scores):
            return soft_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.long), "linear", 0.5, 0.3)[1]

    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5]])
    with pytest.raises(Exception, match="TEST.SOFT_NMS.ENABLED False"):
        torch.export.export(Model(), (boxes, torch.tensor([0.9, 0.8])))
    with pytest.raises(ValueError, match="TEST.SOFT_NMS.METHOD"):
        soft_nms(boxes, torch.tensor([0.9, 0.8]), torch.tensor([0, 0]), "hard", 0.5, 0.3)
