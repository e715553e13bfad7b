import pytest
import torch

from det_dcn.modeling.sampling import subsample_labels


def test_fraction_and_total():
    torch.manual_seed(0)
    labels = torch.tensor([1] * 100 + [0] * 1000 + [-1] * 50)
    pos, neg = subsample_labels(labels, 256, 0.25, bg_label=0)
    assert len(pos) == 64 and len(neg) == 192
    assert (labels[pos] == 1).all() and (labels[neg] == 0).all()
    assert len(set(pos.tolist())) == 64 and len(set(neg.tolist())) == 192  # without replacement


def test_negatives_fill_when_positives_are_few():
    labels = torch.tensor([3] * 5 + [7] * 1000)  # classes 0..6 foreground, 7 background (RoI-head style)
    pos, neg = subsample_labels(labels, 512, 0.25, bg_label=7)
    assert len(pos) == 5 and len(neg) == 507


def test_too_few_of_both_and_ignored_never_sampled():
    labels = torch.tensor([1, 1, 0, -1, -1])
    pos, neg = subsample_labels(labels, 256, 0.5, bg_label=0)
    assert sorted(pos.tolist()) == [0, 1] and neg.tolist() == [2]


def test_random_choice_varies_with_seed():
    labels = torch.tensor([1] * 100)
    torch.manual_seed(1)
    a = subsample_labels(labels, 10, 1.0, 0)[0]
    torch.manual_seed(2)
    b = subsample_labels(labels, 10, 1.0, 0)[0]
    assert a.tolist() != b.tolist()


def test_bad_fraction():
    with pytest.raises(ValueError, match="positive_fraction"):
        subsample_labels(torch.tensor([1, 0]), 2, 1.5, 0)
