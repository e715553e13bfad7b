"""GeneralizedRCNN: preprocess -> backbone -> proposal generator -> RoI heads -> rescale."""

from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..backbone import build_backbone
from ..image_list import ImageList
from ..proposal_generator import build_proposal_generator
from ..roi_heads import build_roi_heads
from .build import META_ARCH_REGISTRY
from .preprocess import rescale_boxes, resize_image


@META_ARCH_REGISTRY.register()
class GeneralizedRCNN(nn.Module):
    """Faster R-CNN family detector.

    forward(batched_inputs: List[dict]) with dicts holding "image" (``[C, H, W]`` uint8 or float tensor in
    INPUT.FORMAT channel order, 0-255 scale), optional "height"/"width" (size of the outputs), and in training
    "boxes" (``[G, 4]`` float XYXY in the image tensor's pixels) and "classes" (``[G]`` int64 in [0, NUM_CLASSES)).

    - training: images are used at their given size; returns {"loss_rpn_cls", "loss_rpn_loc", "loss_cls",
      "loss_box_reg"} (scalar tensors).
    - eval: each image is normalised, resized to MIN_SIZE_TEST / MAX_SIZE_TEST (torchvision's rule), padded, and
      detections are mapped back to "height" x "width" (default: the given image's size); returns per image
      {"boxes" ``[D, 4]``, "scores" ``[D]``, "classes" ``[D]`` int64}.

    Attributes: ``backbone``, ``proposal_generator``, ``roi_heads``.
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        proposal_generator: nn.Module,
        roi_heads: nn.Module,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        min_size_test: int = 800,
        max_size_test: int = 1333,
        size_divisibility: int = 0,
    ):
        super().__init__()
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(
                f"MODEL.PIXEL_MEAN ({list(pixel_mean)}) and MODEL.PIXEL_STD ({list(pixel_std)}) differ in length"
            )
        if any(s <= 0 for s in pixel_std):
            raise ValueError(f"MODEL.PIXEL_STD must be positive, got {list(pixel_std)}")
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads
        # Not persistent: the config is the source of truth, checkpoints stay free of preprocessing constants.
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
        self.min_size_test = min_size_test
        self.max_size_test = max_size_test
        self.size_divisibility = max(int(size_divisibility), int(getattr(backbone, "size_divisibility", 0)))

    @classmethod
    def from_config(cls, cfg, backbone: Optional[nn.Module] = None) -> "GeneralizedRCNN":
        """Build from a config; ``backbone`` overrides cfg.MODEL.BACKBONE (useful in tests)."""
        if backbone is None:
            backbone = build_backbone(cfg)
        if cfg.INPUT.FORMAT not in ("BGR", "RGB"):
            raise ValueError(f"INPUT.FORMAT must be 'BGR' or 'RGB', got '{cfg.INPUT.FORMAT}'")
        if len(cfg.MODEL.PIXEL_MEAN) != 3:
            raise ValueError(f"MODEL.PIXEL_MEAN must have 3 values (one per channel), got {cfg.MODEL.PIXEL_MEAN}")
        shapes = backbone.output_shape()
        return cls(
            backbone=backbone,
            proposal_generator=build_proposal_generator(cfg, shapes),
            roi_heads=build_roi_heads(cfg, shapes),
            pixel_mean=cfg.MODEL.PIXEL_MEAN,
            pixel_std=cfg.MODEL.PIXEL_STD,
            min_size_test=cfg.INPUT.MIN_SIZE_TEST,
            max_size_test=cfg.INPUT.MAX_SIZE_TEST,
            size_divisibility=cfg.INPUT.SIZE_DIVISIBILITY,
        )

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def _image(self, inp: dict, i: int) -> Tensor:
        if not isinstance(inp, dict) or "image" not in inp:
            raise ValueError(f"batched_inputs[{i}] must be a dict with an 'image' tensor, got {type(inp).__name__}")
        img = inp["image"]
        if not isinstance(img, Tensor) or img.dim() != 3 or img.shape[0] != self.pixel_mean.shape[0]:
            shape = tuple(img.shape) if isinstance(img, Tensor) else type(img).__name__
            raise ValueError(
                f"batched_inputs[{i}]['image'] must be a [{self.pixel_mean.shape[0]}, H, W] tensor (CHW, in "
                f"INPUT.FORMAT channel order), got {shape}"
            )
        return img.to(self.device, non_blocking=True).float()

    def preprocess_image(self, batched_inputs: List[dict]) -> ImageList:
        """Normalise, (eval only) resize, and pad the images into one batch."""
        if len(batched_inputs) == 0:
            raise ValueError("batched_inputs is empty; pass at least one image dict")
        images = [(self._image(x, i) - self.pixel_mean) / self.pixel_std for i, x in enumerate(batched_inputs)]
        if not self.training and self.min_size_test > 0:
            images = [resize_image(x, self.min_size_test, self.max_size_test) for x in images]
        return ImageList.from_tensors(images, self.size_divisibility)

    def _targets(self, batched_inputs: List[dict]):
        boxes, classes = [], []
        for i, x in enumerate(batched_inputs):
            if "boxes" not in x or "classes" not in x:
                raise ValueError(f"batched_inputs[{i}] needs 'boxes' and 'classes' in training mode")
            b, c = x["boxes"], x["classes"]
            if not isinstance(b, Tensor) or b.dim() != 2 or b.shape[1] != 4:
                shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
                raise ValueError(f"batched_inputs[{i}]['boxes'] must be a [G, 4] XYXY tensor, got {shape}")
            if not isinstance(c, Tensor) or c.dim() != 1 or len(c) != len(b):
                shape = tuple(c.shape) if isinstance(c, Tensor) else type(c).__name__
                raise ValueError(f"batched_inputs[{i}]['classes'] must be a [{len(b)}] int64 tensor, got {shape}")
            if len(b) and not bool(((b[:, 2] >= b[:, 0]) & (b[:, 3] >= b[:, 1])).all()):
                raise ValueError(f"batched_inputs[{i}]['boxes'] must be XYXY with x2 >= x1 and y2 >= y1; got {b}")
            boxes.append(b.to(self.device, torch.float32))
            classes.append(c.to(self.device, torch.int64))
        return boxes, classes

    def forward(self, batched_inputs: List[dict]):
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        gt_boxes, gt_classes = self._targets(batched_inputs)
        features = self.backbone(images.tensor)
        proposals, rpn_losses = self.proposal_generator(images, features, gt_boxes)
        _, det_losses = self.roi_heads(images, features, proposals, gt_boxes, gt_classes)
        return {**rpn_losses, **det_losses}

    def inference(self, batched_inputs: List[dict], do_postprocess: bool = True) -> List[Dict[str, Tensor]]:
        """Detections per image; with ``do_postprocess=False`` boxes stay in the resized, padded batch's frame."""
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        proposals, _ = self.proposal_generator(images, features, None)
        results, _ = self.roi_heads(images, features, proposals)
        if not do_postprocess:
            return results
        for x, r, size in zip(batched_inputs, results, images.image_sizes):
            raw_h, raw_w = x["image"].shape[-2:]
            out_size = (int(x.get("height", raw_h)), int(x.get("width", raw_w)))
            r["boxes"] = rescale_boxes(r["boxes"], size, out_size)
        return results
