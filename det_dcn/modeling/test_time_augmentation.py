"""Test-time augmentation: a detector run at several test sizes and mirrored, its detections merged.

detectron2's ``GeneralizedRCNNWithTTA`` and config keys (TEST.AUG.MIN_SIZES / MAX_SIZE / FLIP), which merge by
per-class NMS. det_dcn adds box voting (TEST.AUG.MERGE "vote", ``nms.vote_boxes``): each box NMS keeps is
replaced by the score-weighted mean of the boxes of its class that overlap it by at least TEST.AUG.VOTE_IOU_THRESH, so
that the augmentations average their localisation errors instead of one of them winning. With TEST.SOFT_NMS the
merge is soft-NMS too, as in one pass.
"""

import contextlib
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .nms import check_soft_nms, soft_nms_setting, suppress, vote_boxes

MERGE_MODES = ("nms", "vote")


@contextlib.contextmanager
def _test_size(model: nn.Module, min_size: int, max_size: int):
    """The model resizes its test images to ``min_size`` / ``max_size`` within the block."""
    saved = model.min_size_test, model.max_size_test
    model.min_size_test, model.max_size_test = min_size, max_size
    try:
        yield
    finally:
        model.min_size_test, model.max_size_test = saved


def hflip_boxes(boxes: Tensor, width: int) -> Tensor:
    """``[N, 4]`` XYXY boxes of an image ``width`` pixels wide -> the same boxes in the mirrored image."""
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


class GeneralizedRCNNWithTTA(nn.Module):
    """Runs ``model`` (a GeneralizedRCNN in eval mode) on each input at every size in ``min_sizes`` (capped by
    ``max_size``), and mirrored too when ``flip``; merges the detections per image.

    forward(batched_inputs) takes and returns what GeneralizedRCNN.inference does: per image {"boxes" ``[D, 4]`` in
    "height" x "width" pixels, "scores" ``[D]``, "classes" ``[D]`` int64}, at most ``topk_per_image`` by decreasing
    score. ``merge``: "nms" (detectron2's: per-class NMS at ``nms_thresh`` over the union of the augmentations'
    detections) or "vote" (the same NMS, then each kept box is the score-weighted mean of its class's boxes that
    overlap it by >= ``vote_iou_thresh``; its score stays the highest one). ``soft_nms`` (method, sigma): soft-NMS
    (``nms.soft_nms``) at ``nms_thresh`` instead of NMS in either mode.
    """

    def __init__(
        self,
        model: nn.Module,
        min_sizes: Sequence[int],
        max_size: int,
        flip: bool = True,
        merge: str = "nms",
        nms_thresh: float = 0.5,
        topk_per_image: int = 100,
        vote_iou_thresh: float = 0.7,
        soft_nms: Optional[Tuple[str, float]] = None,
    ):
        super().__init__()
        if len(min_sizes) == 0 or any(int(s) <= 0 for s in min_sizes):
            raise ValueError(f"TEST.AUG.MIN_SIZES must be one or more positive sizes, got {tuple(min_sizes)}")
        if max_size <= 0:
            raise ValueError(f"TEST.AUG.MAX_SIZE must be positive, got {max_size}")
        if merge not in MERGE_MODES:
            raise ValueError(f"TEST.AUG.MERGE must be one of {MERGE_MODES}, got {merge!r}")
        if not 0.0 < vote_iou_thresh <= 1.0:
            raise ValueError(f"TEST.AUG.VOTE_IOU_THRESH must lie in (0, 1], got {vote_iou_thresh}")
        check_soft_nms(soft_nms)
        for attr in ("min_size_test", "max_size_test", "inference"):
            if not hasattr(model, attr):
                raise TypeError(f"GeneralizedRCNNWithTTA wraps a GeneralizedRCNN-like model (with {attr}), got "
                                f"{type(model).__name__}")
        self.model = model
        self.min_sizes = [int(s) for s in min_sizes]
        self.max_size = int(max_size)
        self.flip = bool(flip)
        self.merge = merge
        self.nms_thresh = float(nms_thresh)
        self.topk_per_image = int(topk_per_image)
        self.vote_iou_thresh = float(vote_iou_thresh)
        self.soft_nms = soft_nms

    @classmethod
    def from_config(cls, cfg, model: nn.Module) -> "GeneralizedRCNNWithTTA":
        aug = cfg.TEST.AUG
        return cls(
            model,
            aug.MIN_SIZES,
            aug.MAX_SIZE,
            flip=aug.FLIP,
            merge=aug.MERGE,
            nms_thresh=cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            topk_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
            vote_iou_thresh=aug.VOTE_IOU_THRESH,
            soft_nms=soft_nms_setting(cfg),
        )

    def describe(self) -> str:
        """One line for the log: the sizes, the flip and the merge rule."""
        passes = len(self.min_sizes) * (2 if self.flip else 1)
        line = (f"shorter side {self.min_sizes} (longer at most {self.max_size}){', and mirrored' if self.flip else ''}: "
                f"{passes} passes per image, merged by per-class {self._suppression()} at IoU {self.nms_thresh}")
        if self.merge == "vote":
            line += f", then box voting (IoU >= {self.vote_iou_thresh})"
        return line

    def _suppression(self) -> str:
        return "NMS" if self.soft_nms is None else f"soft-NMS ({self.soft_nms[0]}, sigma {self.soft_nms[1]})"

    def _augmented_detections(self, batched_inputs: List[dict]) -> List[List[Dict[str, Tensor]]]:
        """Per image, the detections of every augmentation, in that image's output pixels."""
        widths = [int(x.get("width", x["image"].shape[-1])) for x in batched_inputs]
        mirrored = [{**x, "image": x["image"].flip(-1)} for x in batched_inputs] if self.flip else None
        per_image: List[List[Dict[str, Tensor]]] = [[] for _ in batched_inputs]
        for min_size in self.min_sizes:
            with _test_size(self.model, min_size, self.max_size):
                for i, r in enumerate(self.model.inference(batched_inputs)):
                    per_image[i].append(r)
                if mirrored is not None:
                    for i, r in enumerate(self.model.inference(mirrored)):
                        per_image[i].append({**r, "boxes": hflip_boxes(r["boxes"], widths[i])})
        return per_image

    def _merge(self, detections: List[Dict[str, Tensor]]) -> Dict[str, Tensor]:
        boxes = torch.cat([d["boxes"].float() for d in detections])
        scores = torch.cat([d["scores"].float() for d in detections])
        classes = torch.cat([d["classes"] for d in detections])
        keep, kept_scores = suppress(boxes, scores, classes, self.nms_thresh, self.soft_nms)
        if self.topk_per_image >= 0:
            keep, kept_scores = keep[: self.topk_per_image], kept_scores[: self.topk_per_image]
        if self.merge == "vote":
            merged = vote_boxes(keep, boxes, scores, classes, self.vote_iou_thresh)
        else:
            merged = boxes[keep]
        return {"boxes": merged, "scores": kept_scores, "classes": classes[keep]}

    def forward(self, batched_inputs: List[dict]) -> List[Dict[str, Tensor]]:
        if self.model.training:
            raise RuntimeError("GeneralizedRCNNWithTTA is for inference; put the model in eval mode (model.eval())")
        return [self._merge(d) for d in self._augmented_detections(batched_inputs)]
