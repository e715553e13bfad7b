"""DatasetMapper: one dataset dict (format: det_dcn/data/coco.py) -> one model input dict (format below)."""

from typing import List, Optional

import numpy as np
import torch

from . import detection_utils as utils
from .transforms import Augmentation, apply_augmentations, build_augmentations


class DatasetMapper:
    """Reads the image and prepares the input the model expects.

    Training output: {"image": uint8 [3,H',W'] tensor in ``image_format`` (augmented: build_augmentations),
    "boxes": float32 [N,4] XYXY in the augmented image's pixels, "classes": int64 [N] (crowd boxes left out),
    "height", "width" (original size), "image_id", "file_name"}.
    Test output: {"image": uint8 [3,H,W] at the ORIGINAL size (the model resizes), "height", "width",
    "image_id", "file_name"}.

    Raises ``BadDataError`` naming the file for a missing / unreadable image or a size that disagrees with the
    annotation. In training, returns None when no box survives clipping (caller skips the image) unless
    ``filter_empty`` is False.
    """

    def __init__(self, is_train: bool, augmentations: List[Augmentation], image_format: str = "BGR",
                 filter_empty: bool = True):
        self.is_train = is_train
        self.augmentations = list(augmentations)
        self.image_format = image_format
        self.filter_empty = filter_empty

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> "DatasetMapper":
        return cls(
            is_train,
            build_augmentations(cfg, is_train),
            cfg.INPUT.FORMAT,
            filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        )

    def __call__(self, dataset_dict: dict, rng: Optional[np.random.Generator] = None) -> Optional[dict]:
        d = dataset_dict
        image = utils.read_image(d["file_name"], self.image_format)
        utils.check_image_size(d, image)
        out = {
            "height": int(d.get("height", image.shape[0])),
            "width": int(d.get("width", image.shape[1])),
            "image_id": d.get("image_id"),
            "file_name": d["file_name"],
        }
        if not self.is_train:
            out["image"] = utils.image_to_tensor(image)
            return out

        if rng is None:
            rng = np.random.default_rng()
        boxes, classes = utils.annotations_to_arrays(d.get("annotations", []))
        image, transforms = apply_augmentations(self.augmentations, image, rng, boxes)
        boxes = transforms.apply_boxes(boxes)
        boxes, classes = utils.clip_and_filter_boxes(boxes, classes, image.shape[0], image.shape[1])
        if self.filter_empty and len(boxes) == 0:
            return None
        out["image"] = utils.image_to_tensor(image)
        out["boxes"] = torch.from_numpy(boxes.astype(np.float32))
        out["classes"] = torch.from_numpy(classes.astype(np.int64))
        return out
