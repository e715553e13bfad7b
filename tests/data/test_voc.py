"""Pascal VOC XML: the standard layout, LabelImg folders (DATASETS.CUSTOM_VOC), the split, every error / skip path."""

import os

import cv2
import numpy as np
import pytest

from det_dcn.config import get_cfg
from det_dcn.data import DatasetCatalog, MetadataCatalog
from det_dcn.data.build import register_custom_from_cfg
from det_dcn.data.voc import VOC_CLASSES, load_voc_folder, load_voc_instances, natural_key, register_pascal_voc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_xml(path, objects, size=(60, 40), filename=None):
    """objects: (name, xmin, ymin, xmax, ymax, difficult); size None leaves <size> out."""
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>" for n, x1, y1, x2, y2, d in objects)
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    fn = f"<filename>{filename}</filename>" if filename else ""
    with open(path, "w") as f:
        f.write(f"<annotation>{fn}{size_xml}{objs}</annotation>")


def write_image(path, w=60, h=40):
    cv2.imwrite(str(path), np.full((h, w, 3), 128, np.uint8))


def test_standard_layout_box_convention_and_difficult(tmp_path):
    root = tmp_path / "VOC2007"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    write_image(root / "JPEGImages" / "000001.jpg")
    write_xml(root / "Annotations" / "000001.xml", [("dog", 1, 1, 60, 40, 0), ("person", 10, 5, 20, 30, 1)])
    write_image(root / "JPEGImages" / "000002.jpg", 30, 50)
    write_xml(root / "Annotations" / "000002.xml", [("cat", 3, 4, 10, 12, 0)], size=(0, 0))  # size from the header
    (root / "ImageSets" / "Main" / "test.txt").write_text("000001\n000002\n")
    register_pascal_voc("tmp_voc_test", str(root), "test", 2007)
    try:
        d1, d2 = DatasetCatalog.get("tmp_voc_test")
        meta = MetadataCatalog.get("tmp_voc_test")
        assert (meta.evaluator_type, meta.year, meta.split, meta.dirname) == ("pascal_voc", 2007, "test", str(root))
        assert meta.thing_classes == list(VOC_CLASSES) and len(VOC_CLASSES) == 20
        assert d1["image_id"] == "000001" and (d1["width"], d1["height"]) == (60, 40)
        # detectron2: xmin, ymin - 1; xmax, ymax unchanged; difficult kept
        assert d1["annotations"] == [
            {"bbox": [0.0, 0.0, 60.0, 40.0], "category_id": VOC_CLASSES.index("dog"), "iscrowd": 0, "difficult": 0},
            {"bbox": [9.0, 4.0, 20.0, 30.0], "category_id": VOC_CLASSES.index("person"), "iscrowd": 0,
             "difficult": 1}]
        assert (d2["width"], d2["height"]) == (30, 50)
    finally:
        DatasetCatalog.remove("tmp_voc_test")
        MetadataCatalog.remove("tmp_voc_test")
    with pytest.raises(FileNotFoundError, match=r"ImageSets.Main.val.txt"):
        load_voc_instances(str(root), "val")


def test_builtin_voc_names_under_the_datasets_root():
    for year, splits in ((2007, ("trainval", "train", "val", "test")), (2012, ("trainval", "train", "val"))):
        for split in splits:
            meta = MetadataCatalog.get(f"voc_{year}_{split}")
            assert (meta.year, meta.split, meta.evaluator_type) == (year, split, "pascal_voc")
            assert meta.dirname.endswith(f"VOC{year}")


def _labelimg_folder(root, n=12, same_folder=False):
    ann = root if same_folder else root / "annotations"
    img = root if same_folder else root / "images"
    ann.mkdir(parents=True, exist_ok=True)
    img.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        write_image(img / f"pic-{i}.jpg")
        write_xml(ann / f"pic-{i}.xml", [("zebra" if i % 2 else "ant", 2, 2, 20, 20, 0)], filename=f"pic-{i}.jpg")
    return str(ann), str(img)


def _custom(entry):
    cfg = get_cfg()
    cfg.merge_from_list(["DATASETS.CUSTOM_VOC", str([list(entry)])])
    return cfg


@pytest.mark.parametrize("same_folder", [False, True])
def test_labelimg_folder_split_and_classes_from_files(tmp_path, same_folder):
    ann, img = _labelimg_folder(tmp_path, same_folder=same_folder)
    names = register_custom_from_cfg(_custom(("lbl", ann, img)))
    try:
        assert names == ["lbl", "lbl_train", "lbl_val"]
        assert register_custom_from_cfg(_custom(("lbl", ann, img))) == names  # idempotent
        all_, train, val = (DatasetCatalog.get(n) for n in names)
        assert MetadataCatalog.get("lbl_val").thing_classes == ["ant", "zebra"]  # sorted, from every file
        assert (MetadataCatalog.get("lbl_val").year, MetadataCatalog.get("lbl_val").split) == (2012, "val")
        # natural order pic-1, pic-2, ..., pic-10: every 5th is val
        assert [d["image_id"] for d in val] == ["pic-5", "pic-10"]
        assert len(all_) == 12 and len(train) == 10
        assert {d["image_id"] for d in train} | {d["image_id"] for d in val} == {d["image_id"] for d in all_}
    finally:
        for n in ("lbl", "lbl_train", "lbl_val"):
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)


def test_given_class_names_and_val_every(tmp_path):
    ann, img = _labelimg_folder(tmp_path)
    assert sorted(["pic-10", "pic-9", "pic-1"], key=natural_key) == ["pic-1", "pic-9", "pic-10"]
    val = load_voc_folder(ann, img, ["zebra", "ant"], "val", val_every=3)
    assert [d["image_id"] for d in val] == ["pic-3", "pic-6", "pic-9", "pic-12"]
    assert [d["annotations"][0]["category_id"] for d in val] == [0, 1, 0, 1]  # zebra first, as given
    with pytest.raises(ValueError, match=r"pic-2.xml: class 'ant' is not among the class names \['zebra'\]"):
        load_voc_folder(ann, img, ["zebra"])
    for bad, msg in (([["x", ann]], "each entry must be"), ([["x", ann, img, "a,a"]], "distinct"),
                     ([["x", ann, img, "", 1]], "val_every must be an integer >= 2")):
        cfg = get_cfg()
        cfg.merge_from_list(["DATASETS.CUSTOM_VOC", str(bad)])
        with pytest.raises(ValueError, match=msg):
            register_custom_from_cfg(cfg)
    with pytest.raises(FileNotFoundError, match=r"CUSTOM_VOC: dataset 'x': image folder not found"):
        register_custom_from_cfg(_custom(("x", ann, str(tmp_path / "nope"))))


def test_folds_partition_the_folder(tmp_path):
    """The val_every folds' val subsets are disjoint and cover the folder (cross-validation); the default fold is the
    historical split (every val_every-th from the val_every-th); a bad fold is named."""
    ann, img = _labelimg_folder(tmp_path)
    entries = [[f"f{k}", ann, img, "", 4, k] for k in range(4)]
    cfg = get_cfg()
    cfg.merge_from_list(["DATASETS.CUSTOM_VOC", str(entries)])
    names = register_custom_from_cfg(cfg)
    try:
        vals = [[d["image_id"] for d in DatasetCatalog.get(f"f{k}_val")] for k in range(4)]
        assert vals[0] == ["pic-1", "pic-5", "pic-9"] and vals[3] == ["pic-4", "pic-8", "pic-12"]
        every = sorted(i for v in vals for i in v)
        assert every == sorted(d["image_id"] for d in DatasetCatalog.get("f0")) and len(set(every)) == 12
        for k in range(4):
            train = {d["image_id"] for d in DatasetCatalog.get(f"f{k}_train")}
            assert not train & set(vals[k]) and len(train) + len(vals[k]) == 12
        assert vals[3] == [d["image_id"] for d in load_voc_folder(ann, img, None, "val", val_every=4)]
    finally:
        for n in names:
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)
    for fold in (4, -1, "1"):
        cfg = get_cfg()
        cfg.merge_from_list(["DATASETS.CUSTOM_VOC", str([["g", ann, img, "", 4, fold]])])
        with pytest.raises(ValueError, match=r"entry 'g': fold must be an integer in \[0, val_every\) = \[0, 4\)"):
            register_custom_from_cfg(cfg)


def test_skips_and_corrections_are_counted_and_named(tmp_path, caplog):
    ann, img = tmp_path / "a", tmp_path / "i"
    ann.mkdir()
    img.mkdir()
    write_xml(ann / "no_image.xml", [("a", 1, 1, 5, 5, 0)])
    write_image(img / "wrong_size.png", 30, 20)
    write_xml(ann / "wrong_size.xml", [("a", 1, 1, 300, 5, 0), ("a", 50, 50, 60, 60, 0)], size=(300, 200))
    write_image(img / "renamed.png")
    write_xml(ann / "renamed.xml", [("a", 1, 1, 5, 5, 0)], filename="/old/place/renamed.jpg")  # found by stem
    (img / "broken.jpg").write_bytes(b"not an image")
    write_xml(ann / "broken.xml", [("a", 1, 1, 5, 5, 0)])
    with caplog.at_level("WARNING"):
        dicts = load_voc_folder(str(ann), str(img))
    by_id = {d["image_id"]: d for d in dicts}
    assert set(by_id) == {"wrong_size", "renamed"}
    assert (by_id["wrong_size"]["width"], by_id["wrong_size"]["height"]) == (30, 20)  # the image wins
    assert by_id["wrong_size"]["annotations"][0]["bbox"] == [0.0, 0.0, 30.0, 5.0]  # clipped; 2nd box dropped
    text = caplog.text
    assert "1 XML files without an image were skipped" in text and "no_image.xml" in text
    assert "1 XML files whose image cannot be read were skipped" in text and "broken.jpg" in text
    assert "<size> disagrees" in text and "300x200" in text and "30x20" in text
    assert "1 boxes beyond the image were clipped" in text and "1 boxes with no area" in text


@pytest.mark.parametrize("xml, msg", [
    ("<annotation><object><name>a</name>", "malformed XML"),
    ("<annotation><object><name>a</name><bndbox><xmin>one</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax>"
     "</bndbox></object></annotation>", r"<object #0/bndbox/xmin> is 'one', expected a number"),
    ("<annotation><object><name>a</name><bndbox><xmin>nan</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax>"
     "</bndbox></object></annotation>", "expected a finite number"),
    ("<annotation><object><name>a</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>inf</xmax><ymax>5</ymax>"
     "</bndbox></object></annotation>", "expected a finite number"),
    ("<annotation><object><name>a</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax></bndbox></object>"
     "</annotation>", r"ymax> is None"),
    ("<annotation><object><name>a</name></object></annotation>", "has no <bndbox>"),
    ("<annotation><object><bndbox/></object></annotation>", "has no <name>"),
    ("<annotation><size><width>-3</width></size></annotation>", "non-negative integer"),
    ("<annotation><object><name>a</name><difficult>maybe</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>"
     "<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>", "<difficult> is 'maybe'"),
])
def test_malformed_files_are_errors_naming_file_and_field(tmp_path, xml, msg):
    write_image(tmp_path / "bad.jpg")
    (tmp_path / "bad.xml").write_text(xml)
    with pytest.raises(ValueError, match=r"bad\.xml.*" + msg):
        load_voc_folder(str(tmp_path), str(tmp_path))


def _raccoon_dir():
    return os.environ.get("DET_DCN_RACCOON", os.path.join(REPO, "..", "shared", "datasets", "raccoon"))


@pytest.mark.skipif(not os.path.isdir(_raccoon_dir()), reason="raccoon dataset absent (set DET_DCN_RACCOON)")
def test_raccoon_200_images_217_boxes_160_40():
    root = _raccoon_dir()
    ann, img = os.path.join(root, "annotations"), os.path.join(root, "images")
    all_ = load_voc_folder(ann, img, dataset_name=None)
    assert len(all_) == 200 and sum(len(d["annotations"]) for d in all_) == 217
    assert {a["category_id"] for d in all_ for a in d["annotations"]} == {0}
    train, val = load_voc_folder(ann, img, subset="train"), load_voc_folder(ann, img, subset="val")
    assert (len(train), len(val)) == (160, 40)
    assert [d["image_id"] for d in val[:3]] == ["raccoon-5", "raccoon-10", "raccoon-15"]
