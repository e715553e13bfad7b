import pytest
import torch

from det_dcn.modeling.matcher import Matcher


def test_thresholds_and_labels():
    m = Matcher([0.3, 0.7], [0, -1, 1])
    iou = torch.tensor([[0.1, 0.3, 0.5, 0.7, 0.9, 0.0],
                        [0.2, 0.0, 0.6, 0.0, 0.0, 0.75]])
    matches, labels = m(iou)
    assert matches.tolist() == [1, 0, 1, 0, 0, 1]
    # 0.2 < 0.3 -> 0; 0.3 in [0.3, 0.7) -> -1; 0.6 -> -1; 0.7 -> 1 (lower bounds inclusive); 0.9 -> 1; 0.75 -> 1
    assert labels.tolist() == [0, -1, -1, 1, 1, 1]


def test_low_quality_matches_include_ties_and_keep_best_gt_index():
    m = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
    iou = torch.tensor([[0.4, 0.4, 0.1, 0.0],   # gt 0: best 0.4, reached by predictions 0 and 1 (tie)
                        [0.5, 0.0, 0.2, 0.1]])  # gt 1: best 0.5 at prediction 0
    matches, labels = m(iou)
    assert labels.tolist() == [1, 1, 0, 0]
    # prediction 0 is the best of both ground truths; its index stays the overall argmax (gt 1)
    assert matches.tolist() == [1, 0, 1, 1]
    # without the option the same predictions are ignored / negative
    assert Matcher([0.3, 0.7], [0, -1, 1])(iou)[1].tolist() == [-1, -1, 0, 0]


def test_low_quality_skips_ground_truth_that_overlaps_nothing():
    m = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
    iou = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.2, 0.0]])
    assert m(iou)[1].tolist() == [0, 1, 0]


def test_no_ground_truth():
    matches, labels = Matcher([0.5], [0, 1])(torch.zeros(0, 5))
    assert matches.tolist() == [0] * 5 and labels.tolist() == [0] * 5


def test_no_predictions_and_nan():
    matches, labels = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)(torch.zeros(2, 0))
    assert matches.shape == (0,) and labels.shape == (0,)
    _, labels = Matcher([0.5], [0, 1])(torch.tensor([[float("nan"), 0.9]]))
    assert labels.tolist() == [-1, 1]


def test_bad_arguments():
    with pytest.raises(ValueError, match="one label more"):
        Matcher([0.3, 0.7], [0, 1])
    with pytest.raises(ValueError, match="increasing"):
        Matcher([0.7, 0.3], [0, -1, 1])
    with pytest.raises(ValueError, match="-1"):
        Matcher([0.5], [0, 2])
