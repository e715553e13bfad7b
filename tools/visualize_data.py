#!/usr/bin/env python
r"""Draw the training data: the annotations as they are, or the batches the trainer sees (detectron2's tool).

    python tools/visualize_data.py --config-file configs/custom/faster_rcnn_raccoon.yaml --source dataloader \
        --output-dir vis_data [--num-images 16] [KEY VALUE ...]

``--source annotation``: the images of DATASETS.TRAIN with their boxes (crowd boxes left out, as in training).
``--source dataloader``: the images after the training augmentations of the config (crop, resize, flip, colour,
mosaic, mixup), in the order training draws them (SEED), with the boxes the model learns from. One picture per image
in ``--output-dir`` (``NAME.jpg``; ``ITER_POS_NAME.jpg`` for the data loader), boxes in their class colour with the
class name; small images are enlarged for display. KEY VALUE pairs override the config, e.g. INPUT.MOSAIC.ENABLED True.
"""

import argparse
import itertools
import os
import sys
from typing import Iterator, Tuple

import numpy as np
from tqdm import tqdm

from det_dcn.config import ConfigError, get_cfg
from det_dcn.config.overrides import parse_args_with_overrides
from det_dcn.data import MetadataCatalog, build_detection_train_loader, get_detection_dataset_dicts, read_image
from det_dcn.data.build import register_custom_from_cfg
from det_dcn.data.detection_utils import BadDataError, annotations_to_arrays
from det_dcn.utils.atomic_io import atomic_imwrite, ensure_output_dir
from det_dcn.vis.visualizer import draw_detections, upscale_for_display

# enlarge pictures whose short side is below this, so that labels stay readable
DISPLAY_MIN_SIZE = 480


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE", help="config YAML (may use _BASE_)")
    p.add_argument("--source", required=True, choices=["annotation", "dataloader"],
                   help="the annotations as they are, or the augmented training batches")
    p.add_argument("--output-dir", required=True, metavar="DIR", help="folder for the pictures (created)")
    p.add_argument("--num-images", type=int, default=16, metavar="N", help="how many images to draw (default 16)")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides, e.g. INPUT.MOSAIC.ENABLED True")
    return p


def annotated_images(cfg) -> Iterator[Tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, BGR image, boxes, classes) of DATASETS.TRAIN as annotated; unreadable files are named and skipped."""
    for d in get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=False):
        try:
            image = read_image(d["file_name"], "BGR")
        except BadDataError as e:
            print(f"skipped: {e}", file=sys.stderr)
            continue
        boxes, classes = annotations_to_arrays(d.get("annotations", []))
        yield os.path.splitext(os.path.basename(d["file_name"]))[0], image, boxes, classes


def loader_images(cfg) -> Iterator[Tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, BGR image, boxes, classes) of the training batches, as the model receives them."""
    for it, batch in enumerate(build_detection_train_loader(cfg)):
        for pos, d in enumerate(batch):
            image = d["image"].permute(1, 2, 0).numpy()
            if cfg.INPUT.FORMAT == "RGB":
                image = image[:, :, ::-1]
            name = f"{it:06d}_{pos}_{os.path.splitext(os.path.basename(d['file_name']))[0]}"
            yield name, np.ascontiguousarray(image), d["boxes"].numpy(), d["classes"].numpy()


def main(argv=None) -> int:
    args = parse_args_with_overrides(get_parser(), argv)
    if args.num_images < 1:
        raise SystemExit(f"tools/visualize_data.py: --num-images must be >= 1, got {args.num_images}")
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    output_dir = ensure_output_dir(args.output_dir, "--output-dir")
    register_custom_from_cfg(cfg)
    images = annotated_images(cfg) if args.source == "annotation" else loader_images(cfg)
    # the names are known once the dataset is loaded (custom datasets learn them from their files)
    names = None
    for name, image, boxes, classes in tqdm(itertools.islice(images, args.num_images), total=args.num_images,
                                            desc=f"drawing ({args.source})"):
        names = names or MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).get("thing_classes")
        picture, factor = upscale_for_display(image, DISPLAY_MIN_SIZE)
        atomic_imwrite(os.path.join(output_dir, f"{name}.jpg"),
                       draw_detections(picture, boxes, None, classes, names, scale=factor))
    print(f"Pictures written to {output_dir}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ConfigError, ValueError, FileNotFoundError) as e:
        sys.exit(f"tools/visualize_data.py: {e}")
