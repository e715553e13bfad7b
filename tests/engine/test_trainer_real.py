"""DefaultTrainer and DefaultPredictor on the real Faster R-CNN and data loader (tiny sizes, generated shapes)."""

import json
import logging
import os

import cv2
import numpy as np
import pytest
import torch

from det_dcn.config import get_cfg
from det_dcn.data import DatasetCatalog
from det_dcn.engine import DefaultPredictor, DefaultTrainer, hooks
from det_dcn.layers import DropBlock2d

from engine_helpers import SHAPES_TRAIN as TRAIN, SHAPES_VAL as VAL

HERE = os.path.dirname(os.path.abspath(__file__))


def _cfg(output_dir, **overrides):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(HERE, "tiny_faster_rcnn.yaml"))
    cfg.DATASETS.TRAIN = (TRAIN,)
    cfg.DATASETS.TEST = ()
    cfg.OUTPUT_DIR = output_dir
    cfg.merge_from_list([x for kv in overrides.items() for x in kv])
    return cfg


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_real_model_and_loader_is_bit_identical(dataset, tmp_path):
    full_dir, cut_dir = str(tmp_path / "full"), str(tmp_path / "cut")
    full = DefaultTrainer(_cfg(full_dir))
    full.resume_or_load(resume=False)
    full.train()

    class Stop(Exception):
        pass

    class Interrupted(DefaultTrainer):
        def run_step(self):
            if self.iter == 2:
                raise Stop()
            super().run_step()

    with pytest.raises(Stop):
        cut = Interrupted(_cfg(cut_dir))
        cut.resume_or_load(resume=False)
        cut.train()
    # two runs with the same SEED are bit-identical (first checkpoint of both)
    _assert_identical(_weights(os.path.join(full_dir, "model_0000001.pth")),
                      _weights(os.path.join(cut_dir, "model_0000001.pth")))

    resumed = DefaultTrainer(_cfg(cut_dir))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 2
    resumed.train()
    # random flips, multi-scale sizes, RPN / RoI sampling and the LR schedule all continued exactly
    _assert_identical(_weights(os.path.join(full_dir, "model_final.pth")),
                      _weights(os.path.join(cut_dir, "model_final.pth")))
    # the loader's count of skipped bad images is part of the metrics
    with open(os.path.join(full_dir, "metrics.json")) as f:
        last = [json.loads(line) for line in f][-1]
    assert last["data/num_skipped"] == 0 and last["iteration"] == 3


def test_dropblock_warm_up_follows_the_iteration_also_on_resume(dataset, tmp_path):
    overrides = {"MODEL.RESNETS.DROPBLOCK.PROB": 0.2, "MODEL.RESNETS.DROPBLOCK.WARMUP_ITERS": 4,
                 "MODEL.RESNETS.DROPBLOCK.ON_PER_STAGE": "[False, False, True, True]"}
    seen = []

    class Recording(DefaultTrainer):
        def run_step(self):
            seen.append({m.current_p for m in self.model.modules() if isinstance(m, DropBlock2d)})
            super().run_step()

    trainer = Recording(_cfg(str(tmp_path), **overrides, **{"SOLVER.MAX_ITER": 2}))
    assert any(isinstance(h, hooks.DropBlockWarmup) for h in trainer._hooks)
    trainer.train()
    resumed = Recording(_cfg(str(tmp_path), **overrides))  # MAX_ITER 4: two more steps from the checkpoint
    resumed.resume_or_load(resume=True)
    resumed.train()
    assert [sorted(s) for s in seen] == [[0.0], [0.05], [pytest.approx(0.1)], [pytest.approx(0.15)]]
    plain = DefaultTrainer(_cfg(str(tmp_path / "plain")))
    assert not any(isinstance(h, hooks.DropBlockWarmup) for h in plain._hooks)


@pytest.fixture(scope="module")
def trained_weights(dataset, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("engine_real_train"))
    trainer = DefaultTrainer(_cfg(out, **{"SOLVER.MAX_ITER": 1}))
    trainer.train()
    return os.path.join(out, "model_final.pth")


def _val_image(dataset):
    d = DatasetCatalog.get(VAL)[0]
    return cv2.imread(d["file_name"], cv2.IMREAD_COLOR)


@pytest.mark.parametrize("fmt", ["BGR", "RGB"])
def test_predictor_matches_model_and_converts_channels(dataset, trained_weights, tmp_path, fmt):
    cfg = _cfg(str(tmp_path), **{"MODEL.WEIGHTS": trained_weights, "INPUT.FORMAT": fmt})
    predictor = DefaultPredictor(cfg)
    assert not predictor.model.training
    image = _val_image(dataset)
    out = predictor(image)
    assert set(out) == {"boxes", "scores", "classes"}
    assert out["boxes"].shape[1] == 4 and len(out["scores"]) == len(out["classes"]) > 0
    h, w = image.shape[:2]
    assert out["boxes"][:, 0::2].max() <= w and out["boxes"][:, 1::2].max() <= h
    # same as calling the model on the image in INPUT.FORMAT
    model_input = image[:, :, ::-1] if fmt == "RGB" else image
    tensor = torch.from_numpy(np.ascontiguousarray(model_input.transpose(2, 0, 1)))
    with torch.no_grad():
        expected = predictor.model([{"image": tensor, "height": h, "width": w}])[0]
    torch.testing.assert_close(out["boxes"], expected["boxes"])
    torch.testing.assert_close(out["scores"], expected["scores"])
    # the weights were loaded
    ckpt = _weights(trained_weights)
    torch.testing.assert_close(predictor.model.state_dict()["roi_heads.box_predictor.cls_score.weight"],
                               ckpt["roi_heads.box_predictor.cls_score.weight"])


def test_predictor_rejects_bad_images(dataset, trained_weights, tmp_path):
    predictor = DefaultPredictor(_cfg(str(tmp_path), **{"MODEL.WEIGHTS": trained_weights}))
    with pytest.raises(ValueError, match="HxWx3"):
        predictor(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        predictor(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="numpy"):
        predictor(torch.zeros(10, 10, 3))


def test_predictor_with_test_time_augmentation(dataset, trained_weights, tmp_path):
    """TEST.AUG.ENABLED: the predictor runs GeneralizedRCNNWithTTA; one unmirrored pass at the model's own test size
    gives the plain predictor's detections; mirrored passes at two sizes give boxes in the image, by score."""
    plain_cfg = _cfg(str(tmp_path), **{"MODEL.WEIGHTS": trained_weights})
    plain = DefaultPredictor(plain_cfg)
    image = _val_image(dataset)
    expected = plain(image)
    same = DefaultPredictor(_cfg(str(tmp_path), **{
        "MODEL.WEIGHTS": trained_weights, "TEST.AUG.ENABLED": True, "TEST.AUG.FLIP": False,
        "TEST.AUG.MIN_SIZES": (plain_cfg.INPUT.MIN_SIZE_TEST,), "TEST.AUG.MAX_SIZE": plain_cfg.INPUT.MAX_SIZE_TEST}))
    assert type(same.runner).__name__ == "GeneralizedRCNNWithTTA" and same.runner.model is same.model
    assert type(same.model).__name__ == "GeneralizedRCNN"  # what export and the offset tools take
    out = same(image)
    for key in ("boxes", "scores", "classes"):
        torch.testing.assert_close(out[key], expected[key])
    sizes = (plain_cfg.INPUT.MIN_SIZE_TEST - 16, plain_cfg.INPUT.MIN_SIZE_TEST + 16)
    augmented = DefaultPredictor(_cfg(str(tmp_path), **{
        "MODEL.WEIGHTS": trained_weights, "TEST.AUG.ENABLED": True, "TEST.AUG.MIN_SIZES": sizes,
        "TEST.AUG.MERGE": "vote"}))(image)
    h, w = image.shape[:2]
    assert len(augmented["boxes"]) > 0
    assert augmented["boxes"][:, 0::2].max() <= w and augmented["boxes"][:, 1::2].max() <= h
    assert bool((augmented["scores"][1:] <= augmented["scores"][:-1]).all())


def _parameters(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_precise_bn_sets_the_statistics_in_model_final_and_changes_no_weight(dataset, tmp_path):
    # BatchNorm everywhere, DropBlock (draws from the RNG in the pass's forwards) and a pass mid-run (EVAL_PERIOD 2)
    bn = {"MODEL.RESNETS.NORM": "BN", "MODEL.FPN.NORM": "BN", "MODEL.RESNETS.DROPBLOCK.PROB": 0.2,
          "MODEL.RESNETS.DROPBLOCK.ON_PER_STAGE": "[False, False, True, True]", "TEST.EVAL_PERIOD": 2}
    plain = DefaultTrainer(_cfg(str(tmp_path / "plain"), **bn))
    plain.train()
    cfg = _cfg(str(tmp_path / "precise"), **bn, **{"TEST.PRECISE_BN.ENABLED": True, "TEST.PRECISE_BN.NUM_ITER": 3})
    updates = []

    class Counting(DefaultTrainer):
        @classmethod
        def update_bn_stats(cls, cfg, model):
            updates.append(model)
            super().update_bn_stats(cfg, model)

    precise = Counting(cfg)
    assert any(isinstance(h, hooks.PreciseBN) for h in precise._hooks)
    precise.train()
    assert len(updates) == 2  # after iteration 2 (EVAL_PERIOD) and after the last (4)

    a, b = _parameters(plain.model_without_ddp), _parameters(precise.model_without_ddp)
    _assert_identical(a, b)  # the same training: RNG states restored after each pass
    saved = _weights(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
    stats = [k for k in saved if k.endswith("running_mean")]
    assert stats and all(not torch.equal(saved[k], plain.model_without_ddp.state_dict()[k]) for k in stats)

    # --eval-only's pass on model_final finds the statistics it holds: the batches depend on SEED only
    model = DefaultTrainer.build_model(cfg)
    model.load_state_dict(saved)
    DefaultTrainer.update_bn_stats(cfg, model)
    for k in stats + [k.replace("running_mean", "running_var") for k in stats]:
        torch.testing.assert_close(model.state_dict()[k], saved[k], rtol=1e-5, atol=1e-6, msg=k)


def test_precise_bn_is_skipped_without_batch_norm_and_refused_with_model_ema(dataset, tmp_path, caplog):
    logging.getLogger("det_dcn").addHandler(caplog.handler)  # a handler: the trainer leaves the logger as it is
    with caplog.at_level("INFO", logger="det_dcn"):
        frozen = DefaultTrainer(_cfg(str(tmp_path / "frozen"), **{"TEST.PRECISE_BN.ENABLED": True}))
    assert not any(isinstance(h, hooks.PreciseBN) for h in frozen._hooks)
    assert "TEST.PRECISE_BN: the model has no BatchNorm layer" in caplog.text
    from det_dcn.config import ConfigError

    with pytest.raises(ConfigError, match="TEST.PRECISE_BN.ENABLED=True with MODEL_EMA.ENABLED=True"):
        DefaultTrainer(_cfg(str(tmp_path / "ema"), **{"TEST.PRECISE_BN.ENABLED": True, "MODEL.RESNETS.NORM": "BN",
                                                      "MODEL_EMA.ENABLED": True}))
    with pytest.raises(ConfigError, match=r"TEST.PRECISE_BN.NUM_ITER=0: expected a number of batches >= 1"):
        cfg = _cfg(str(tmp_path / "zero"), **{"TEST.PRECISE_BN.NUM_ITER": 0, "MODEL.RESNETS.NORM": "BN"})
        DefaultTrainer.update_bn_stats(cfg, DefaultTrainer.build_model(cfg))
    with pytest.raises(ConfigError, match="needs training batches .* DATASETS.TRAIN is empty"):
        cfg = _cfg(str(tmp_path / "no_train"), **{"MODEL.RESNETS.NORM": "BN"})
        cfg.DATASETS.TRAIN = ()
        DefaultTrainer.update_bn_stats(cfg, DefaultTrainer.build_model(cfg))
