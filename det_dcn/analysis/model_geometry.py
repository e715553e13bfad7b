"""The geometry graph (det_dcn.analysis.geometry) of a det_dcn backbone, read from its modules.

``backbone_geometry(backbone, input_size)`` -> {feature name: Node} for every output feature of a ResNet (res2-res5,
DC5, multi-grid, deformable stages by their regular grid, ASPP on res5) or an FPN over one (p2-p6). Residual blocks
are the hull of their main branch and shortcut; the FPN's top-down pathway is nearest upsampling plus the lateral.
A module type without a rule raises TypeError naming it.
"""

from typing import Callable, Dict, List

from torch import nn

from det_dcn.layers import ASPP
from det_dcn.modeling.backbone import FPN, BasicBlock, BasicStem, BottleneckBlock, LastLevelMaxPool, ResNet
from det_dcn.modeling.backbone.blocks import ASPPBlock

from .geometry import Add, Conv, GlobalPool, Input, LayerGeometry, Node, Upsample

# BasicStem.forward max-pools with kernel 3, stride 2, padding 1 (a functional call, no module to read it from).
STEM_POOL = LayerGeometry(kernel=3, stride=2, dilation=1, padding=1)


def conv_geometry(conv: nn.Module) -> LayerGeometry:
    """Geometry of a conv module along one axis (nn.Conv2d, det_dcn's Conv2d, deformable Pack modules)."""
    try:
        k, s, d, p = (conv.kernel_size, conv.stride, conv.dilation, conv.padding)
    except AttributeError as e:
        raise TypeError(f"{type(conv).__name__} has no kernel_size / stride / dilation / padding: {e}") from e
    first = [v[0] if isinstance(v, (tuple, list)) else int(v) for v in (k, s, d, p)]
    return LayerGeometry(*first)


def _conv(src: Node, conv: nn.Module) -> Node:
    return Conv(src, conv_geometry(conv))


def _residual(src: Node, main: List[nn.Module], shortcut) -> Node:
    out = src
    for conv in main:
        out = _conv(out, conv)
    short = src if shortcut is None else _conv(src, shortcut)
    return Add(out, short)


def _stem(stem: BasicStem, src: Node) -> Node:
    return Conv(_conv(src, stem.conv1), STEM_POOL)


def _basic(block: BasicBlock, src: Node) -> Node:
    return _residual(src, [block.conv1, block.conv2], block.shortcut)


def _bottleneck(block: BottleneckBlock, src: Node) -> Node:
    return _residual(src, [block.conv1, block.conv2, block.conv3], block.shortcut)


def _aspp(aspp: ASPP, src: Node) -> Node:
    branches: List[Node] = [_conv(src, conv) for conv in aspp.branch_convs()]
    if aspp.image_pooling is not None:
        branches.append(GlobalPool(src))
    out = Add(*branches)  # concatenation: each position sees the hull of the branches
    return Add(out, src) if aspp.residual else out


def _aspp_block(block: ASPPBlock, src: Node) -> Node:
    return _aspp(block.aspp, src)


BLOCK_RULES: Dict[type, Callable[[nn.Module, Node], Node]] = {
    BasicStem: _stem, BasicBlock: _basic, BottleneckBlock: _bottleneck, ASPPBlock: _aspp_block, ASPP: _aspp,
}


def _block(module: nn.Module, src: Node) -> Node:
    for cls in type(module).__mro__:
        if cls in BLOCK_RULES:
            return BLOCK_RULES[cls](module, src)
    raise TypeError(f"No receptive-field rule for {type(module).__name__}; add one to BLOCK_RULES in "
                    f"det_dcn/analysis/model_geometry.py")


def resnet_geometry(resnet: ResNet, src: Node) -> Dict[str, Node]:
    """{"stem", "res2", ...: Node} for every built stage of ``resnet`` (not only its out_features)."""
    x = _block(resnet.stem, src)
    nodes = {"stem": x}
    for name in resnet.stage_names:
        for block in getattr(resnet, name):
            x = _block(block, x)
        nodes[name] = x
    return nodes


def fpn_geometry(fpn: FPN, src: Node) -> Dict[str, Node]:
    """The bottom-up stages' nodes and {"p2", ..., "p6": Node} following FPN.forward (lateral 1x1 + nearest top-down, 3x3 output, top block)."""
    bottom = _bottom_up_geometry(fpn.bottom_up, src)
    laterals = [bottom[f] for f in fpn.in_features[::-1]]
    prev = _conv(laterals[0], fpn._lateral_convs[0])
    results = [_conv(prev, fpn._output_convs[0])]
    for feature, lateral_conv, output_conv in zip(laterals[1:], fpn._lateral_convs[1:], fpn._output_convs[1:]):
        lateral = _conv(feature, lateral_conv)
        prev = Add(lateral, Upsample(prev, lateral.size))
        results.insert(0, _conv(prev, output_conv))
    names = list(fpn._out_features)
    nodes = {**bottom, **dict(zip(names, results))}
    top = fpn.top_block
    if top is not None:
        if not isinstance(top, LastLevelMaxPool):
            raise TypeError(f"No receptive-field rule for the FPN top block {type(top).__name__}")
        nodes[names[len(results)]] = Conv(nodes[top.in_feature], LayerGeometry(kernel=1, stride=2))
    return nodes


def _bottom_up_geometry(module: nn.Module, src: Node) -> Dict[str, Node]:
    if isinstance(module, ResNet):
        return resnet_geometry(module, src)
    if isinstance(module, FPN):
        return fpn_geometry(module, src)
    raise TypeError(f"No receptive-field rule for the backbone {type(module).__name__} (ResNet and FPN have one)")


def backbone_geometry(backbone: nn.Module, input_size: int) -> Dict[str, Node]:
    """{feature: Node} for ``backbone.output_shape()``'s features (plus, for an FPN, its bottom-up stages), on a
    square input of ``input_size`` pixels."""
    return _bottom_up_geometry(backbone, Input(input_size))
