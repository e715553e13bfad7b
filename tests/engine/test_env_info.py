"""collect_env_info: the lines that let a result be traced to its software and hardware."""

import platform

import torch

from det_dcn.engine import env_info


def test_env_info_names_versions_cpu_model_and_kernel_level():
    text = env_info.collect_env_info()
    rows = dict(line.split(None, 1) for line in text.splitlines() if not line.startswith(("sys.", "CUDA")))
    assert torch.__version__ in rows["PyTorch"]
    cpu = rows["CPU"]
    assert cpu.startswith(env_info.cpu_model()) and platform.machine() in cpu
    assert f"torch threads {torch.get_num_threads()}" in cpu
    assert cpu.endswith(f"kernels {torch.backends.cpu.get_cpu_capability()}")


def test_cpu_model_without_proc_cpuinfo_falls_back_to_platform(monkeypatch):
    def no_file(*args, **kwargs):
        raise FileNotFoundError("/proc/cpuinfo")

    monkeypatch.setattr(env_info, "open", no_file, raising=False)
    assert env_info.cpu_model() == (platform.processor() or platform.machine())
