"""Catalogs and COCO json loading."""

import json

import pytest

from det_dcn.data import DatasetCatalog, MetadataCatalog, load_coco_json, register_coco_instances


def test_catalog_register_get_and_errors():
    DatasetCatalog.register("tmp_cat_ds", lambda: [{"file_name": "x"}])
    try:
        assert DatasetCatalog.get("tmp_cat_ds") == [{"file_name": "x"}]
        with pytest.raises(ValueError, match="already registered"):
            DatasetCatalog.register("tmp_cat_ds", lambda: [])
        with pytest.raises(KeyError, match="not_there.*not registered"):
            DatasetCatalog.get("not_there")
    finally:
        DatasetCatalog.remove("tmp_cat_ds")


def test_metadata_refuses_silent_change_and_names_missing_key():
    m = MetadataCatalog.get("tmp_meta")
    try:
        m.thing_classes = ["a", "b"]
        m.thing_classes = ["a", "b"]  # same value is fine
        with pytest.raises(ValueError, match="thing_classes"):
            m.thing_classes = ["b", "a"]
        with pytest.raises(AttributeError, match="tmp_meta.*json_file"):
            m.json_file
    finally:
        MetadataCatalog.remove("tmp_meta")


def test_builtin_names_registered():
    for n in ("coco_2017_train", "coco_2017_val", "shapes_train", "shapes_val"):
        assert n in DatasetCatalog
    assert len(MetadataCatalog.get("coco_2017_val").thing_classes) == 80
    assert MetadataCatalog.get("coco_2017_val").thing_dataset_id_to_contiguous_id[90] == 79


def test_load_coco_json(coco_dataset, caplog):
    with caplog.at_level("WARNING"):
        dicts = load_coco_json(coco_dataset["json_file"], coco_dataset["image_root"], "tmp_load")
    try:
        assert "dropped 2 of" in caplog.text  # zero-width and outside boxes
        meta = MetadataCatalog.get("tmp_load")
        assert meta.thing_classes == ["a", "b", "c"]
        assert meta.thing_dataset_id_to_contiguous_id == {3: 0, 7: 1, 42: 2}
        by_id = {d["image_id"]: d for d in dicts}
        assert len(dicts) == 10 and set(by_id) == set(range(1, 11))  # empty images are kept at load time
        d1 = by_id[1]
        assert d1["file_name"].endswith("001.png") and (d1["height"], d1["width"]) == (40, 60)
        annos = sorted(d1["annotations"], key=lambda a: a["bbox"][0])
        assert annos[0] == {"bbox": [0.0, 0.0, 60.0, 40.0], "category_id": 0, "iscrowd": 1}
        assert annos[1] == {"bbox": [5.0, 5.0, 15.0, 25.0], "category_id": 1, "iscrowd": 0}  # XYWH -> XYXY
        assert annos[2]["category_id"] == 2
        assert by_id[3]["annotations"] == []
        assert by_id[4]["annotations"] == [{"bbox": [50.0, 30.0, 60.0, 40.0], "category_id": 1, "iscrowd": 0}]
    finally:
        MetadataCatalog.remove("tmp_load")


def test_register_coco_instances_lazy(coco_dataset):
    register_coco_instances("tmp_reg", coco_dataset["json_file"], coco_dataset["image_root"])
    try:
        meta = MetadataCatalog.get("tmp_reg")
        assert meta.json_file == coco_dataset["json_file"] and meta.evaluator_type == "coco"
        assert len(DatasetCatalog.get("tmp_reg")) == 10
        assert meta.thing_classes == ["a", "b", "c"]
    finally:
        DatasetCatalog.remove("tmp_reg")
        MetadataCatalog.remove("tmp_reg")


def test_bad_json_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_coco_json(str(tmp_path / "nope.json"), str(tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "height": 5, "width": 5}],
                               "annotations": [{"id": 1, "image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1]}],
                               "categories": [{"id": 1, "name": "x"}]}))
    with pytest.raises(ValueError, match=r"bad.json.*category_id 9"):
        load_coco_json(str(bad), str(tmp_path))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ValueError, match="garbage.json"):
        load_coco_json(str(garbage), str(tmp_path))


def test_duplicate_ids_are_errors_naming_file_and_ids(tmp_path):
    def image(i, name):
        return {"id": i, "file_name": name, "height": 5, "width": 5}

    def ann(i, image_id):
        return {"id": i, "image_id": image_id, "category_id": 1, "bbox": [0, 0, 1, 1]}

    cats = [{"id": 1, "name": "x"}]
    dup_images = tmp_path / "dup_images.json"
    dup_images.write_text(json.dumps({"images": [image(7, "a.png"), image(7, "b.png"), image(3, "c.png")],
                                      "annotations": [ann(1, 7)], "categories": cats}))
    with pytest.raises(ValueError, match=r"dup_images.json: image ids must be unique.*: 7$"):
        load_coco_json(str(dup_images), str(tmp_path))
    dup_anns = tmp_path / "dup_anns.json"
    dup_anns.write_text(json.dumps({"images": [image(1, "a.png"), image(2, "b.png")],
                                    "annotations": [ann(5, 1), ann(5, 2), ann(6, 2), ann(6, 1)], "categories": cats}))
    with pytest.raises(ValueError, match=r"dup_anns.json: annotation ids must be unique.*: 5, 6$"):
        load_coco_json(str(dup_anns), str(tmp_path))


def test_missing_builtin_coco_names_path_and_variable(tmp_path):
    from det_dcn.data import register_all_builtin

    register_all_builtin(str(tmp_path))
    try:
        with pytest.raises(FileNotFoundError, match=r"instances_val2017.json.*DET_DCN_DATASETS"):
            DatasetCatalog.get("coco_2017_val")
    finally:
        register_all_builtin()
