"""COCO files as annotation tools write them: sizes missing or wrong, non-finite numbers, repeated category ids."""

import json

import cv2
import numpy as np
import pytest

from det_dcn.data import load_coco_json


def _write(tmp_path, images, annos, cats=({"id": 0, "name": "x"},)):
    for im in images:
        cv2.imwrite(str(tmp_path / im.pop("_make")), np.zeros((40, 60, 3), np.uint8)) if "_make" in im else None
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"images": images, "annotations": annos, "categories": list(cats)}))
    return str(path)


def test_sizes_missing_or_wrong_come_from_the_image_with_one_warning(tmp_path, caplog):
    (tmp_path / "sub").mkdir()
    images = [{"id": 1, "file_name": "sub/a.png", "_make": "sub/a.png"},  # no size; sub-folder file name
              {"id": 2, "file_name": "b.png", "_make": "b.png", "width": 600, "height": 400},  # 10x wrong
              {"id": 3, "file_name": "c.png", "_make": "c.png", "width": 60, "height": 40}]
    annos = [{"id": 1, "image_id": 2, "category_id": 0, "bbox": [50, 30, 100, 100]},  # no area / iscrowd
             {"id": 2, "image_id": 1, "category_id": 0, "bbox": [1, 1, 5, 5], "segmentation": []}]
    with caplog.at_level("WARNING"):
        dicts = load_coco_json(_write(tmp_path, images, annos), str(tmp_path))
    assert [(d["width"], d["height"]) for d in dicts] == [(60, 40)] * 3
    assert dicts[1]["annotations"][0]["bbox"] == [50.0, 30.0, 60.0, 40.0]  # clipped to the real image
    assert dicts[2]["annotations"] == []  # images without annotations kept
    assert caplog.text.count("have no or a wrong width/height") == 1 and "2 images" in caplog.text
    assert "clipped 1 of 2 boxes" in caplog.text


@pytest.mark.parametrize("image, ann, msg", [
    ({"width": float("nan")}, {}, r"image id 1 has width nan, expected a finite number"),
    ({}, {"bbox": [1, float("inf"), 2, 2]}, r"annotation id 1 has bbox inf, expected a finite number"),
    ({}, {"bbox": [1, "2", 2, 2]}, r"annotation id 1 has bbox '2'"),
    ({"file_name": ""}, {}, r"image id 1 has file_name ''"),
])
def test_non_finite_or_wrong_fields_name_file_id_and_field(tmp_path, image, ann, msg):
    images = [{"id": 1, "file_name": "a.png", "_make": "a.png", "width": 60, "height": 40, **image}]
    annos = [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [1, 1, 5, 5], **ann}]
    with pytest.raises(ValueError, match=r"a\.json: " + msg):
        load_coco_json(_write(tmp_path, images, annos), str(tmp_path))


def test_repeated_category_ids_and_unknowable_size_are_errors(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "_make": "a.png"}]
    with pytest.raises(ValueError, match=r"a\.json: category ids must be unique.*: 0$"):
        load_coco_json(_write(tmp_path, images, [], [{"id": 0, "name": "x"}, {"id": 0, "name": "y"}]),
                       str(tmp_path))
    with pytest.raises(ValueError, match=r"a\.json: image id 1 has width/height \(None, None\).*not found"):
        load_coco_json(_write(tmp_path, [{"id": 1, "file_name": "gone.png"}], []), str(tmp_path))
