"""libxr.precision: what each --precision autocasts to, when gradients are scaled, whether this
CPU does bfloat16 in hardware, and the warning when it would be emulated."""

import pytest
import torch

from libxr import precision

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("device, choice, dtype, scaled", [
    pytest.param(CPU, "auto", None, False, id="cpu-auto-is-float32"),
    pytest.param(CPU, "fp32", None, False, id="cpu-fp32"),
    pytest.param(CPU, "bf16", torch.bfloat16, False, id="cpu-bf16"),
    pytest.param(CUDA, "auto", torch.float16, True, id="cuda-auto-is-float16-scaled"),
    pytest.param(CUDA, "fp32", None, False, id="cuda-fp32"),
    pytest.param(CUDA, "bf16", torch.bfloat16, False, id="cuda-bf16-needs-no-scaler"),
])
def test_what_each_precision_autocasts_to(device, choice, dtype, scaled):
    assert precision.autocast_dtype(device, choice) == dtype
    assert precision.needs_scaler(device, choice) is scaled


@pytest.mark.parametrize("choice, dtype", [("auto", torch.float32), ("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_a_cpu_forward_pass_runs_in_it(choice, dtype):
    conv = torch.nn.Conv2d(1, 4, 3)
    with precision.autocast(CPU, choice):
        out = conv(torch.randn(2, 1, 8, 8))
    assert out.dtype == dtype


@pytest.mark.parametrize("flags, native", [
    pytest.param("flags\t\t: fpu sse4_2 avx2 avx512f amx_bf16 amx_tile\n", True, id="amx"),
    pytest.param("flags\t\t: fpu sse4_2 avx2 avx512f avx512_bf16\n", True, id="avx512-bf16"),
    pytest.param("flags\t\t: fpu sse4_2 avx2 fma\nvmx flags\t: ept bf16\n", False, id="avx2-only"),
    pytest.param("Features\t: fp asimd sve bf16 i8mm\n", True, id="arm-bf16"),
    pytest.param("Features\t: fp asimd evtstrm\n", False, id="arm-without"),
])
def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\n" + flags)
    assert precision.native_bf16(CPU, str(info)) is native


def test_native_bfloat16_is_unknown_without_cpuinfo(tmp_path):
    assert precision.native_bf16(CPU, str(tmp_path / "absent")) is None


@pytest.mark.parametrize("device, native, choice, warned", [
    pytest.param(CPU, False, "bf16", "this CPU has no bfloat16 arithmetic (AMX, AVX512-BF16 or Arm's BF16), so "
                 "bfloat16 is emulated and slower than --precision auto's float32 here", id="cpu-emulated"),
    pytest.param(CUDA, False, "bf16", "cuda has no bfloat16 units (compute capability below 8.0), so bfloat16 is "
                 "emulated and slower than --precision auto's float16 there", id="cuda-emulated"),
    pytest.param(CPU, True, "bf16", None, id="native"),
    pytest.param(CPU, None, "bf16", None, id="unknown"),
    pytest.param(CPU, False, "auto", None, id="auto"),
    pytest.param(CPU, False, "fp32", None, id="fp32"),
])
def test_emulated_bfloat16_is_warned_of(monkeypatch, device, native, choice, warned):
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    said = []
    precision.check(device, choice, said.append)
    assert said == ([f"--precision bf16: {warned}"] if warned else [])
