"""class_names_from_cfg: the names demo tools put on boxes, for built-in and DATASETS.CUSTOM_COCO / CUSTOM_VOC sets."""

import os
import sys

import pytest

from det_dcn.config import get_cfg
from det_dcn.data import DatasetCatalog, MetadataCatalog
from det_dcn.vis.class_names import class_names_from_cfg

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data"))
from test_custom_coco import write_boxes_dataset  # noqa: E402
from test_voc import _labelimg_folder  # noqa: E402


@pytest.fixture
def cfg():
    """A config whose custom datasets are unregistered again after the test."""
    cfg = get_cfg()
    before = set(DatasetCatalog.list())
    yield cfg
    for name in set(DatasetCatalog.list()) - before:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _set(cfg, *opts):
    cfg.merge_from_list(list(opts))
    return cfg


@pytest.mark.parametrize("given, expected", [("", ["ant", "zebra"]), ("zebra,ant", ["zebra", "ant"])])
def test_custom_voc_names_from_the_files_or_the_config(cfg, tmp_path, given, expected):
    ann, img = _labelimg_folder(tmp_path)
    _set(cfg, "DATASETS.CUSTOM_VOC", str([["lbl", ann, img, given]]), "DATASETS.TEST", "('lbl_val',)",
         "MODEL.ROI_HEADS.NUM_CLASSES", "2")
    assert class_names_from_cfg(cfg) == expected


def test_custom_coco_names_in_category_id_order(cfg, tmp_path):
    json_file, images = write_boxes_dataset(str(tmp_path))
    _set(cfg, "DATASETS.CUSTOM_COCO", str([["boxes", json_file, images]]), "DATASETS.TEST", "('boxes',)",
         "MODEL.ROI_HEADS.NUM_CLASSES", "2")
    assert class_names_from_cfg(cfg) == ["square", "bar"]  # category ids 5, 9


def test_other_class_count_or_unknown_dataset_gives_none(cfg, tmp_path, capsys):
    ann, img = _labelimg_folder(tmp_path)
    _set(cfg, "DATASETS.CUSTOM_VOC", str([["lbl", ann, img]]), "DATASETS.TEST", "('nowhere', 'lbl')",
         "MODEL.ROI_HEADS.NUM_CLASSES", "3")
    assert class_names_from_cfg(cfg) is None
    assert "dataset 'lbl' has 2 classes but MODEL.ROI_HEADS.NUM_CLASSES is 3" in capsys.readouterr().err
    _set(cfg, "DATASETS.TEST", "('nowhere',)", "DATASETS.TRAIN", "()")
    assert class_names_from_cfg(cfg) is None
