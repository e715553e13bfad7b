"""Bad input to the exporter and OnnxPredictor: clear errors naming the module, the opset, the missing package."""

import os
import subprocess
import sys

import pytest
from torch import nn
from torchvision.ops import roi_align

from det_dcn.deploy import ExportError, make_exportable
from det_dcn.deploy.export import export_onnx
from det_dcn.deploy.export_modules import ExportDeformConv, ExportDeformRoIPool, ExportROIAlign
from det_dcn.layers import ModulatedDeformConv2dPack
from det_dcn.modeling import POOLER_REGISTRY, build_model

from deploy_helpers import REPO, variant_cfg


class OpaquePool(nn.Module):
    """A plugin pooler the exporter knows nothing about."""

    def __init__(self, output_size, spatial_scale):
        super().__init__()
        self.output_size, self.spatial_scale = output_size, spatial_scale

    def forward(self, x, rois):
        return roi_align(x, rois, self.output_size, self.spatial_scale, 2, aligned=True)


class PluginPool(OpaquePool):
    """A plugin pooler that says how it exports."""

    def export_module(self):
        return OpaquePool(self.output_size, self.spatial_scale)


for _cls in (OpaquePool, PluginPool):
    POOLER_REGISTRY.register(name=f"TestDeploy{_cls.__name__}")(
        lambda cfg, size, scale, ratio, channels, _cls=_cls: _cls(size, scale))


def _model(name, *overrides):
    cfg = variant_cfg(name, overrides)
    return build_model(cfg).eval(), cfg


def test_swaps_every_op_module_and_shares_parameters():
    model, _ = _model("mdconv_mdpool")
    exportable = make_exportable(model)
    kinds = {type(m) for m in exportable.modules()}
    assert ExportDeformConv in kinds and ExportDeformRoIPool in kinds
    assert not any(type(m).__module__.startswith("det_dcn.layers") for m in exportable.modules())
    # same parameter names and values: the swap keeps the state dict
    assert exportable.state_dict().keys() == model.state_dict().keys()
    plain, _ = _model("plain")
    assert any(isinstance(m, ExportROIAlign) for m in make_exportable(plain).modules())


def test_plugin_pooler_without_export_path_is_named():
    model, _ = _model("plain", "MODEL.ROI_BOX_HEAD.POOLER_TYPE", "TestDeployOpaquePool")
    with pytest.raises(ExportError, match=r"roi_heads\.box_pooler\.level_poolers\.0.*OpaquePool.*no export path"):
        make_exportable(model)


def test_plugin_pooler_with_export_module_is_used():
    model, _ = _model("plain", "MODEL.ROI_BOX_HEAD.POOLER_TYPE", "TestDeployPluginPool")
    poolers = make_exportable(model).roi_heads.box_pooler.level_poolers
    assert all(type(p) is OpaquePool for p in poolers)


def test_subclass_of_an_op_module_is_named():
    class MyDCN(ModulatedDeformConv2dPack):
        def forward(self, x):
            return super().forward(x) * 2

    model, _ = _model("mdconv")
    name, module = next((n, m) for n, m in model.named_modules() if isinstance(m, ModulatedDeformConv2dPack))
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, MyDCN(module.in_channels, module.out_channels, 3, padding=1))
    with pytest.raises(ExportError, match=rf"'{name}'.*MyDCN.*export_module"):
        make_exportable(model)


def test_opset_below_19_with_dcn_is_refused(tmp_path):
    model, cfg = _model("dconv")
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=r"opset 18.*DeformConv.*opset 19"):
        export_onnx(model, cfg, str(path), opset_version=18)
    assert not path.exists()


def _run(code):
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_onnx_predictor_import_does_not_import_torch():
    r = _run("import sys\nfrom det_dcn.deploy import OnnxPredictor\nassert 'torch' not in sys.modules\n")
    assert r.returncode == 0, r.stderr


def test_missing_onnxruntime_gives_install_hint():
    r = _run("import sys\nsys.modules['onnxruntime'] = None\nfrom det_dcn.deploy import OnnxPredictor\n"
             "OnnxPredictor('model.onnx')\n")
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError") and "pip install onnxruntime" in last


def test_onnx_predictor_names_a_bad_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    from det_dcn.deploy import OnnxPredictor

    with pytest.raises(ValueError, match="bad.onnx"):
        OnnxPredictor(str(bad))


def test_test_time_augmentation_is_not_exported_and_says_so(tmp_path, monkeypatch, caplog):
    """TEST.AUG.ENABLED: export_model exports the detector itself (one pass), not DefaultPredictor's TTA runner,
    and warns that the file runs one pass."""
    import det_dcn.deploy.build as build

    exported = []
    monkeypatch.setattr(build, "export_onnx", lambda model, cfg, output, opset: exported.append(model))
    cfg = variant_cfg("plain", ["TEST.AUG.ENABLED", True, "TEST.AUG.MIN_SIZES", (96, 128)])
    with caplog.at_level("WARNING", logger="det_dcn.deploy.build"):
        build.export_model(cfg, str(tmp_path / "model.onnx"))
    assert [type(m).__name__ for m in exported] == ["GeneralizedRCNN"]
    assert "test-time augmentation is not exported" in caplog.text


def test_soft_nms_is_not_exported_and_says_so(tmp_path, monkeypatch, caplog):
    """TEST.SOFT_NMS.ENABLED: the file gets NMS (soft-NMS does not trace), with a warning naming the key."""
    import det_dcn.deploy.build as build

    exported = []
    monkeypatch.setattr(build, "export_onnx", lambda model, cfg, output, opset: exported.append(model))
    cfg = variant_cfg("plain", ["TEST.SOFT_NMS.ENABLED", True])
    with caplog.at_level("WARNING", logger="det_dcn.deploy.build"):
        build.export_model(cfg, str(tmp_path / "model.onnx"))
    assert exported[0].roi_heads.box_predictor.test_soft_nms is None
    assert "TEST.SOFT_NMS.ENABLED: soft-NMS loops over the data and is not exported" in caplog.text
    assert cfg.TEST.SOFT_NMS.ENABLED  # the caller's config is left as it was
