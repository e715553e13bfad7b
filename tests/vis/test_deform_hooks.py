"""The recorder records exactly the offsets (and masks) the deformable Pack layers deform with."""

import torch
from torch import nn

from det_dcn.layers import (DeformConv2dPack, DeformRoIPoolPack, ModulatedDeformConv2dPack, ModulatedDeformRoIPoolPack,
                            deform_roi_pool)
from det_dcn.vis.deform_hooks import DeformRecorder


class _Net(nn.Module):
    def __init__(self, conv, pool):
        super().__init__()
        self.backbone = nn.Identity()
        self.conv, self.pool = conv, pool

    def forward(self, x, rois):
        x = self.conv(self.backbone(x))
        return x, self.pool(x, rois)


def _randomise(m):
    torch.manual_seed(0)
    for p in m.parameters():
        nn.init.normal_(p, std=0.1)
    return m


def test_recorded_offsets_are_what_forward_used():
    torch.manual_seed(1)
    x = torch.randn(2, 4, 12, 12)
    rois = torch.tensor([[0, 1.0, 1.0, 9.0, 10.0], [1, 2.0, 0.0, 11.0, 6.0]])
    for modulated in (False, True):
        conv_cls = ModulatedDeformConv2dPack if modulated else DeformConv2dPack
        pool_cls = ModulatedDeformRoIPoolPack if modulated else DeformRoIPoolPack
        net = _randomise(_Net(conv_cls(4, 4, 3, padding=1), pool_cls(3, 4, deform_fc_channels=8)))
        with DeformRecorder(net) as rec, torch.no_grad():
            feat, pooled = net(x, rois)
        raw = net.conv.conv_offset(x)[0]
        dcn = rec.dcn["conv"]
        if modulated:  # mmcv's layout: chunk(3) -> o1, o2, mask logits
            o1, o2, logits = raw.chunk(3, dim=0)
            torch.testing.assert_close(torch.from_numpy(dcn.offset), torch.cat([o1, o2]))
            torch.testing.assert_close(torch.from_numpy(dcn.mask), torch.sigmoid(logits))
        else:
            torch.testing.assert_close(torch.from_numpy(dcn.offset), raw)
            assert dcn.mask is None
        (pr,) = rec.pool
        offset = torch.from_numpy(pr.offset).float()
        assert offset.abs().max() > 0
        again = deform_roi_pool(feat, rois, offset, (3, 3), 1.0, 0, 0.1)
        if modulated:
            assert pr.mask.shape == (2, 3, 3) and 0 < pr.mask.min() and pr.mask.max() < 1
            again = again * torch.from_numpy(pr.mask).float()[:, None]
        else:
            assert pr.mask is None
        torch.testing.assert_close(again, pooled)
