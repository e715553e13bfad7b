"""torch.export of NMS: the traced program runs when NMS keeps 0 or 1 boxes (torchvision's fake kernel declares at
least 2, which torch.export would turn into a runtime assertion), and torchvision's own fake kernel is back after."""

import torch
import torchvision

from det_dcn.deploy.export import _nms_may_keep_zero_boxes


class _Nms(torch.nn.Module):
    def forward(self, boxes, scores):
        return torchvision.ops.nms(boxes, scores, 0.5)


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


def test_torchvision_fake_kernel_is_restored():
    from torch._library.simple_registry import singleton

    holder = singleton.find("torchvision::nms").fake_impl
    before = holder.kernel
    with _nms_may_keep_zero_boxes():
        assert holder.kernel is not before
    assert holder.kernel is before
