"""tools/visualize_data.py: the annotations and the augmented training batches as pictures, boxes where they are."""

import os

import cv2
import numpy as np
import pytest

from det_dcn.vis.visualizer import class_color

from load_tool import load_tool
from photo_folders import labelimg_folder

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPE = os.path.join(REPO, "configs", "custom", "faster_rcnn_raccoon.yaml")


def _dataset(ann, img, name):
    return ["DATASETS.CUSTOM_VOC", str([[name, ann, img]]), "DATASETS.TRAIN", f"('{name}_train',)",
            "DATASETS.TEST", f"('{name}_val',)", "INPUT.MIN_SIZE_TRAIN", "(64, 96)", "INPUT.MAX_SIZE_TRAIN", "128"]


def test_annotations_are_drawn_on_their_pixels(tmp_path):
    ann, img = labelimg_folder(tmp_path / "photos")
    out = str(tmp_path / "vis")
    tool = load_tool("visualize_data")
    assert tool.main(["--config-file", RECIPE, "--source", "annotation", "--output-dir", out, "--num-images", "3",
                      *_dataset(ann, img, "vis_ann")]) == 0
    files = sorted(os.listdir(out))
    assert len(files) == 3 and all(f.startswith("pic-") and f.endswith(".jpg") for f in files)
    # pic-2 (the first training photo: pic-1 is every fifth's validation one) has two boxes; the first box's
    # top edge, at the display scale (96 px short side -> x5), is drawn in the class colour
    picture = cv2.imread(os.path.join(out, "pic-2.jpg"))
    xml = open(os.path.join(ann, "pic-2.xml")).read()
    x1, y1, x2 = (int(xml.split(f"<{k}>")[1].split("<")[0]) for k in ("xmin", "ymin", "xmax"))
    factor = 5
    edge = picture[(y1 - 1) * factor, ((x1 - 1 + x2) // 2) * factor].astype(int)
    assert np.abs(edge - np.array(class_color(0))).max() < 40, (edge, class_color(0))


def test_dataloader_pictures_follow_the_augmentation_keys(tmp_path):
    ann, img = labelimg_folder(tmp_path / "photos")
    tool = load_tool("visualize_data")
    plain, mosaic = str(tmp_path / "plain"), str(tmp_path / "mosaic")
    for out, extra in ((plain, []), (mosaic, ["INPUT.MOSAIC.ENABLED", "True", "INPUT.MOSAIC.PROB", "1.0"])):
        assert tool.main(["--config-file", RECIPE, "--source", "dataloader", "--output-dir", out, "--num-images",
                          "4", "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0",
                          *_dataset(ann, img, "vis_loader"), *extra]) == 0
    names = sorted(os.listdir(plain))
    assert names == sorted(os.listdir(mosaic)) and len(names) == 4
    assert names[0].startswith("000000_0_pic-")
    differs = [not np.array_equal(cv2.imread(os.path.join(plain, n)), cv2.imread(os.path.join(mosaic, n)))
               for n in names]
    assert all(differs)


def test_bad_arguments_are_one_line(tmp_path):
    tool = load_tool("visualize_data")
    with pytest.raises(SystemExit, match="--num-images must be >= 1"):
        tool.main(["--config-file", RECIPE, "--source", "annotation", "--output-dir", str(tmp_path), "--num-images",
                   "0"])
