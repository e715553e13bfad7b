"""CUDA-only engine checks (skipped without a GPU): fp16 AMP with a GradScaler saved and resumed, CUDA peak
memory in the metrics, DefaultPredictor on the GPU."""

import json
import os

import pytest
import torch

from det_dcn.engine import DefaultPredictor, DefaultTrainer

from engine_helpers import TinyTrainer, tiny_cfg, train_tiny
from test_trainer_real import _cfg, _val_image

pytestmark = pytest.mark.cuda


def test_tiny_model_fp16_amp_uses_grad_scaler_and_resumes(tmp_path):
    seen = []

    class CudaAmp(TinyTrainer):
        @classmethod
        def build_model(cls, cfg):
            model = super().build_model(cfg).cuda()
            model.conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
            return model

        @classmethod
        def build_train_loader(cls, cfg, start_iter=0):
            loader = super().build_train_loader(cfg, start_iter)

            def on_gpu():
                for batch in loader:
                    yield [{k: (v.cuda() if torch.is_tensor(v) else v) for k, v in d.items()} for d in batch]

            return on_gpu()

    out = str(tmp_path)
    trainer = train_tiny(tiny_cfg(out, **{"SOLVER.AMP.ENABLED": True, "SOLVER.MAX_ITER": 4}), trainer_cls=CudaAmp)
    assert seen and all(d == torch.float16 for d in seen)
    assert trainer.grad_scaler is not None
    ckpt = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert "grad_scaler" in ckpt and ckpt["grad_scaler"]["scale"] > 0
    assert "cuda" in ckpt["rng_states"][0]
    resumed = CudaAmp(tiny_cfg(out, **{"SOLVER.AMP.ENABLED": True, "SOLVER.MAX_ITER": 6}))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 4
    assert resumed.grad_scaler.get_scale() == ckpt["grad_scaler"]["scale"]
    resumed.train()
    with open(os.path.join(out, "metrics.json")) as f:
        memory = [json.loads(line)["memory"] for line in f if "memory" in line]
    # CUDA max_memory_allocated of a tiny model: far below a CPU process's resident size
    assert memory and all(0 < m < 200 for m in memory)


def test_real_model_trains_with_amp_on_cuda_and_predicts(dataset, tmp_path):
    out = str(tmp_path)
    trainer = DefaultTrainer(_cfg(out, **{"MODEL.DEVICE": "cuda", "SOLVER.AMP.ENABLED": True, "SOLVER.MAX_ITER": 3}))
    assert next(trainer.model.parameters()).is_cuda and trainer.grad_scaler is not None
    trainer.train()
    weights = os.path.join(out, "model_final.pth")
    predictor = DefaultPredictor(_cfg(out, **{"MODEL.DEVICE": "cuda", "MODEL.WEIGHTS": weights}))
    result = predictor(_val_image(dataset))
    assert result["boxes"].device.type == "cpu" and len(result["scores"]) > 0
