"""Precision by what the GPU runs natively, with the device properties faked on this CPU."""
import pytest
import torch

from utils.device import compile_mode, grad_scaler, optimizer_kwargs, precision_for


@pytest.mark.parametrize("capability,precision", [
    ((7, 5), "fp16"),  # T4 (Colab's free GPU): bf16 only emulated, so fp16 with a gradient scaler
    ((7, 0), "fp16"),  # V100
    ((8, 0), "bf16"),  # A100
    ((8, 9), "bf16"),  # L4
    ((9, 0), "bf16"),  # H100
    ((6, 1), "fp32"),  # P100 and older: neither runs fast
])
def test_cuda_precision_follows_compute_capability(capability, precision, monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # what a T4 answers
    assert precision_for("cuda") == precision


def test_fp16_gets_a_live_scaler_and_the_others_none():
    assert grad_scaler("cpu", "fp16").is_enabled()
    assert not grad_scaler("cpu", "bf16").is_enabled() and not grad_scaler("cpu", "fp32").is_enabled()


def test_cuda_compiles_with_cuda_graphs_and_fused_adam():
    assert compile_mode("cuda") == "reduce-overhead" and compile_mode("cpu") == "default"
    assert optimizer_kwargs("cuda") == {"fused": True}
    torch.optim.Adam([torch.zeros(2, requires_grad=True)], **optimizer_kwargs("cpu"))  # the CPU has it too


def test_gpu_check_on_a_machine_without_cuda_says_so_in_one_line():
    import subprocess
    import sys

    from conftest import ROOT
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: run python -m benchmarks.gpu_check itself")
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and done.stderr.strip() == "gpu_check: no CUDA device here; run it on a GPU machine"


def test_machine_name_closes_the_file_it_reads():
    import gc
    import warnings

    from benchmarks.common import machine_name
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert machine_name(torch.device("cpu"))
        gc.collect()
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)]


def test_gpu_check_counts_host_syncs_not_the_debug_modes_notice():
    from benchmarks.gpu_check import host_syncs
    caught = ["Synchronization debug mode is a prototype feature and does not yet detect all synchronizing operations "
              "(Triggered internally at Module.cpp:1003.)",
              "called a synchronizing CUDA operation (Triggered internally at CUDAFunctions.cpp:162.)\nstack"]
    assert host_syncs(caught) == ["called a synchronizing CUDA operation (Triggered internally at CUDAFunctions.cpp:162.)"]


@pytest.mark.parametrize("avx512_bf16,amx,precision", [(True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32")])
def test_auto_precision_on_a_cpu_is_bf16_only_with_bf16_instructions(avx512_bf16, amx, precision, monkeypatch):
    """An AVX512 CPU without AVX512-BF16 or AMX only emulates bf16 (slower than fp32): it gets fp32."""
    from utils.device import precision_for
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert precision_for("cpu") == precision
