"""A LabelImg-style folder of generated photos for tool tests (images/ and annotations/ with VOC XML)."""

import cv2
import numpy as np


def labelimg_folder(root, n=10, seed=0):
    """n photos-to-be of 96 x 128 with one or two filled rectangles each, and LabelImg XMLs (1-based corners)."""
    rng = np.random.default_rng(seed)
    ann, img = root / "annotations", root / "images"
    ann.mkdir(parents=True)
    img.mkdir(parents=True)
    for i in range(1, n + 1):
        pic = rng.integers(0, 80, (96, 128, 3), dtype=np.uint8)
        objects = ""
        for _ in range(1 + i % 2):
            x1, y1 = (int(v) for v in rng.integers(0, 50, 2))
            x2, y2 = x1 + int(rng.integers(30, 70)), y1 + int(rng.integers(30, 45))
            pic[y1:y2, x1:x2] = (40, 200, 240)
            objects += (f"<object><name>box</name><difficult>0</difficult><bndbox><xmin>{x1 + 1}</xmin>"
                        f"<ymin>{y1 + 1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
        cv2.imwrite(str(img / f"pic-{i}.jpg"), pic)
        (ann / f"pic-{i}.xml").write_text(f"<annotation><filename>pic-{i}.jpg</filename><size><width>128</width>"
                                          f"<height>96</height><depth>3</depth></size>{objects}</annotation>")
    return str(ann), str(img)
