"""configs/custom/: the small-real-set recipe trains and evaluates (VOC AP) on a LabelImg folder the test writes;
its pretrained variant loads an ImageNet ResNet-18 converted by tools/convert_weights.py; on the raccoon photos
(slow, skipped when absent) a short run learns."""

import os

import numpy as np
import pytest
import torch

from det_dcn.config import get_cfg
from det_dcn.engine import default_argument_parser

from load_tool import load_tool
from photo_folders import labelimg_folder

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPE = os.path.join(REPO, "configs", "custom", "faster_rcnn_raccoon.yaml")
PRETRAINED = os.path.join(REPO, "configs", "custom", "faster_rcnn_raccoon_pretrained.yaml")
RACCOON = os.environ.get("DET_DCN_RACCOON", os.path.join(REPO, "..", "shared", "datasets", "raccoon"))


def _train(config, *opts):
    args = default_argument_parser().parse_args(["--config-file", config, *opts])
    return load_tool("train").main(args)


def _small(name, ann, img, out):
    """The recipe unchanged but for the dataset, the iterations and the sizes (the test's photos are 96 x 128)."""
    return ["DATASETS.CUSTOM_VOC", str([[name, ann, img]]), "DATASETS.TRAIN", f"('{name}_train',)",
            "DATASETS.TEST", f"('{name}_val',)", "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.WARMUP_ITERS", "1", "INPUT.MIN_SIZE_TRAIN", "(64, 96)", "INPUT.MAX_SIZE_TRAIN", "128",
            "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "128", "OUTPUT_DIR", out]


def test_recipe_trains_and_reports_voc_ap_on_alabelimg_folder(tmp_path):
    ann, img = labelimg_folder(tmp_path / "photos")
    results = _train(RECIPE, *_small("recipe_photos", ann, img, str(tmp_path / "out")))
    assert set(results) == {"bbox"} and {"AP", "AP50", "AP75"} <= set(results["bbox"])  # the VOC evaluator's keys
    assert all(np.isfinite(v) for v in results["bbox"].values())
    assert os.path.isfile(tmp_path / "out" / "model_final.pth")
    cfg = get_cfg()
    cfg.merge_from_file(RECIPE)
    assert cfg.INPUT.COLOR_JITTER.ENABLED and cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING == "range"
    assert cfg.SOLVER.AMP.ENABLED and not cfg.INPUT.CROP.ENABLED
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1


def test_pretrained_variant_starts_from_converted_imagenet_weights(tmp_path, capsys):
    import torchvision

    from det_dcn.checkpoint import DetectionCheckpointer
    from det_dcn.modeling import build_model

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None)
    src, dst = tmp_path / "resnet18.pth", tmp_path / "R-18_torchvision_IN.pth"
    torch.save(resnet.state_dict(), src)
    assert load_tool("convert_weights").main(["torchvision", str(src), str(dst), "--config", PRETRAINED]) == 0
    assert "0 shape-mismatched" in capsys.readouterr().out

    cfg = get_cfg()
    cfg.merge_from_file(PRETRAINED)
    cfg.MODEL.WEIGHTS = str(dst)
    model = build_model(cfg)
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    bottom_up = model.backbone.bottom_up
    torch.testing.assert_close(bottom_up.stem.conv1.weight, resnet.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(bottom_up.res5[1].conv2.weight, resnet.layer4[1].conv2.weight, rtol=0, atol=0)

    ann, img = labelimg_folder(tmp_path / "photos")
    results = _train(PRETRAINED, *_small("pretrained_photos", ann, img, str(tmp_path / "out")),
                     "MODEL.WEIGHTS", str(dst))
    assert np.isfinite(results["bbox"]["AP50"])
    final = torch.load(tmp_path / "out" / "model_final.pth", weights_only=True)["model"]
    # the frozen stem kept ImageNet's weights through training
    torch.testing.assert_close(final["backbone.bottom_up.stem.conv1.weight"], resnet.conv1.weight, rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(RACCOON), reason="raccoon dataset absent (set DET_DCN_RACCOON)")
def test_recipe_learns_on_the_raccoon_photos(tmp_path):
    ann, img = os.path.join(RACCOON, "annotations"), os.path.join(RACCOON, "images")
    results = _train(RECIPE, "DATASETS.CUSTOM_VOC", str([["raccoon_slow", ann, img]]),
                     "DATASETS.TRAIN", "('raccoon_slow_train',)", "DATASETS.TEST", "('raccoon_slow_val',)",
                     "SOLVER.MAX_ITER", "300", "OUTPUT_DIR", str(tmp_path / "out"))
    # 300 of the recipe's iterations (a fifth): far from the recipe's result, far above an untrained model's ~0
    assert results["bbox"]["AP50"] > 20.0, results
