"""torch.export of NMS: the traced program runs when NMS keeps 0 or 1 boxes (torchvision's fake kernel declares at
least 2, which torch.export would turn into a runtime assertion), and torchvision's own fake kernel is back after;
box voting after class-aware NMS (TEST.BBOX_VOTE) exports and gives eager's boxes."""

import torch
import torchvision

from det_dcn.deploy.export import _nms_may_keep_zero_boxes
from det_dcn.modeling.nms import batched_nms, vote_boxes


class _Nms(torch.nn.Module):
    def forward(self, boxes, scores):
        return torchvision.ops.nms(boxes, scores, 0.5)


class _NmsVote(torch.nn.Module):
    def forward(self, boxes, scores):
        classes = (scores * 3).long()  # three classes
        keep = batched_nms(boxes, scores, classes, 0.5)
        return vote_boxes(keep, boxes, scores, classes, 0.6)


def _inputs(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    boxes = torch.rand(n, 4, generator=g) * 50
    boxes[:, 2:] += boxes[:, :2] + 1
    return boxes, torch.rand(n, generator=g)


def _export(module):
    n = torch.export.Dim("n", min=0)
    return torch.export.export(module, _inputs(10), dynamic_shapes=({0: n}, {0: n}))


def test_exported_nms_keeps_zero_one_or_many_boxes():
    with _nms_may_keep_zero_boxes():
        program = _export(_Nms())
    run = program.module()
    for n in (0, 1, 2, 7, 30):
        boxes, scores = _inputs(n, seed=n)
        assert torch.equal(run(boxes, scores), torchvision.ops.nms(boxes, scores, 0.5)), n


def test_exported_box_voting_matches_eager():
    with _nms_may_keep_zero_boxes():
        program = _export(_NmsVote())
    run = program.module()
    for n in (0, 1, 2, 7, 30):
        boxes, scores = _inputs(n, seed=n)
        expected = _NmsVote()(boxes, scores)
        torch.testing.assert_close(run(boxes, scores), expected, msg=f"{n} boxes")
    assert not torch.equal(expected, boxes[torchvision.ops.batched_nms(boxes, scores, (scores * 3).long(), 0.5)])


def test_torchvision_fake_kernel_is_restored():
    from torch._library.simple_registry import singleton

    holder = singleton.find("torchvision::nms").fake_impl
    before = holder.kernel
    with _nms_may_keep_zero_boxes():
        assert holder.kernel is not before
    assert holder.kernel is before
