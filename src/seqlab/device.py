"""Where a model runs and in what arithmetic: `--device` and `--precision` for every command.

    resolve_device("auto")            cuda if available, else mps, else cpu (a torch.device)
    resolve_precision("auto", dev)    what is fast there: bf16 on a CUDA GPU that supports it
                                      (else fp16 with a gradient scaler), bf16 on a CPU that
                                      computes bfloat16 natively (AVX512-BF16 / AMX), else fp32
    autocast(dev, precision)          the forward pass's mixed-precision context
    capabilities()                    the facts these choices rest on, for logs and benchmarks
    idle_threads()                    torch threads for a job sharing the CPU: the idle cores

The CPU facts are asked of torch and oneDNN at run time, never assumed: machines differ, and
`ONEDNN_MAX_CPU_ISA` can hide features from oneDNN (a CPU with AVX512-BF16 run with
`ONEDNN_MAX_CPU_ISA=AVX2` behaves like one without).
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any

import torch

from seqlab.errors import UserError

__all__ = ["DEVICE_HELP", "PRECISIONS", "autocast", "capabilities", "check_device_spec",
           "check_precision", "cpu_native_bf16", "fused_lstm_supports", "grad_scaler",
           "idle_threads", "model_device", "resolve_device", "resolve_precision", "to_device"]

DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"
PRECISIONS = ("fp32", "bf16", "fp16")      # plus "auto", resolved by `resolve_precision`
_LOW = {"bf16": torch.bfloat16, "fp16": torch.float16}


# ---- threads ------------------------------------------------------------------------------


def idle_threads(load_average: float | None = None) -> int:
    """Torch threads for a CPU job that shares the machine: torch's default (the cores it may
    use), less the cores other processes keep busy (the 1-minute load average, rounded), at
    least 1.

    Why: each intra-op parallel region waits for its slowest thread, so on a loaded machine
    a thread descheduled for a time slice stalls the others, and two threads on busy cores
    can be several times slower per step than one.
    """
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count() or 1)
    if load_average is None:
        try:
            load_average = os.getloadavg()[0]
        except (AttributeError, OSError):   # no load average here: trust torch's default
            return torch.get_num_threads()
    return max(1, min(torch.get_num_threads(), round(cores - load_average)))


# ---- devices ------------------------------------------------------------------------------


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """`spec` ("auto", "cpu", "cuda", "cuda:N", "mps" or a torch.device) -> a usable device.

    "auto" (or None): cuda if available, else mps, else cpu. A device not present
    is a one-line UserError saying what is available.
    """
    if spec is None or spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    check_device_spec(str(spec))
    dev = torch.device(spec)
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = (f"built with CUDA {torch.version.cuda}" if torch.version.cuda
                     else "a CPU-only build")
            raise UserError(f"device={spec!r}: no CUDA GPU available (torch {torch.__version__}, "
                            f"{build}); use --device cpu or auto")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise UserError(f"device={spec!r}: only {n} CUDA device(s) (cuda:0..cuda:{n - 1})")
        return dev
    if not _mps_available():                      # the only other type check_device_spec lets by
        raise UserError(f"device={spec!r}: MPS (Apple GPU) not available here; use "
                        "--device cpu or auto")
    return dev


def check_device_spec(spec: str) -> None:
    """`spec` is a device name (whether this machine has it is `resolve_device`'s question)."""
    if spec == "auto":
        return
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"device={spec!r}: expected {DEVICE_HELP}")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def model_device(model: torch.nn.Module) -> torch.device:
    """Where `model`'s parameters are (cpu for a model without any, e.g. the onnxruntime
    backend's stand-in, which feeds numpy arrays from CPU tensors)."""
    if not isinstance(model, torch.nn.Module):
        return torch.device("cpu")
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def to_device(obj: Any, device: torch.device | str) -> Any:
    """`obj` with its tensors on `device`: tensors, objects with a `.to(device)` method (batch
    classes), and tuples/lists/dicts of them; anything else unchanged."""
    if isinstance(obj, torch.Tensor) or callable(getattr(obj, "to", None)):
        return obj.to(device)
    if isinstance(obj, tuple | list):
        return type(obj)(to_device(v, device) for v in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


# ---- CPU and GPU capabilities ---------------------------------------------------------------


@functools.cache
def cpu_native_bf16() -> bool:
    """The CPU has bfloat16 arithmetic instructions (AVX512-BF16 or AMX-BF16) and oneDNN may use
    them. Without them oneDNN emulates bfloat16 (or cannot run it), slower than float32."""
    if not _mkldnn_bf16():
        return False     # oneDNN cannot (or, under ONEDNN_MAX_CPU_ISA, may not) use bfloat16
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def _mkldnn_bf16() -> bool:
    return bool(torch.backends.mkldnn.is_available()
                and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _cpu_flags() -> set[str]:
    """The x86 feature flags the OS reports (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.cache
def fused_lstm_supports(dtype: torch.dtype) -> bool:
    """torch's fused CPU LSTM kernel (`torch._VF.lstm`, what `torch.nn.LSTM` calls) runs under
    `torch.autocast("cpu", dtype)`, forward and backward.

    oneDNN builds its low-precision LSTM primitive only where the CPU's instruction set allows;
    elsewhere the call fails ("could not create a primitive descriptor"). Tried once on a tiny
    input and remembered, so the answer is this process's, ONEDNN_MAX_CPU_ISA included.
    """
    from torch import _VF

    # the first call may come from inside no_grad / inference_mode (decoding): probe with grad
    with torch.inference_mode(False), torch.enable_grad():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 2, 4, generator=g)                          # (T, B, I)
        weights = [torch.randn(8, 4, generator=g, requires_grad=True),  # (4H, I), (4H, H)
                   torch.randn(8, 2, generator=g, requires_grad=True)]
        h0 = torch.zeros(1, 2, 2)                                      # (L, B, H)
        try:
            with torch.autocast("cpu", dtype=dtype):
                out = _VF.lstm(x, (h0, h0), weights, False, 1, 0.0, True, False, False)[0]
            out.float().sum().backward()
        except RuntimeError:
            return False
    return True


def _cuda_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def capabilities() -> dict[str, Any]:
    """What this process's torch sees: CPU instruction set, bfloat16 support, GPUs."""
    caps: dict[str, Any] = {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn_bf16": _mkldnn_bf16(),
        "cpu_native_bf16": cpu_native_bf16(),
        "fused_lstm_bf16": fused_lstm_supports(torch.bfloat16),
        "cuda": torch.cuda.is_available(),
        "mps": _mps_available(),
    }
    if caps["cuda"]:
        caps["cuda_device"] = torch.cuda.get_device_name()
        caps["cuda_bf16"] = torch.cuda.is_bf16_supported()
    return caps


# ---- precision ------------------------------------------------------------------------------


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """"auto" -> the fast choice on `device`; anything else is checked and returned."""
    dev = torch.device(device)
    if precision == "auto":
        if dev.type == "cuda":
            return "bf16" if _cuda_bf16() else "fp16"
        if dev.type == "cpu":
            return "bf16" if cpu_native_bf16() else "fp32"
        return "fp32"
    check_precision(precision, dev)
    return precision


def check_precision(precision: str, device: torch.device | str) -> None:
    """A precision the device cannot run is a one-line UserError."""
    dev = torch.device(device)
    if precision not in PRECISIONS:
        raise UserError(f"precision={precision!r}: expected one of auto, {', '.join(PRECISIONS)}")
    if precision == "fp16" and dev.type != "cuda":
        raise UserError(f"precision='fp16' needs a CUDA device (float16 with a gradient "
                        f"scaler), not {dev.type}; use bf16, fp32 or auto")
    if precision == "bf16" and dev.type == "cuda" and not _cuda_bf16():
        raise UserError("precision='bf16': this GPU has no bfloat16 support; use fp16 or auto")


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass's context: torch.autocast to bfloat16/float16 on `device`, or nothing
    for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=_LOW[precision])


def grad_scaler(device: torch.device | str, precision: str) -> torch.amp.GradScaler | None:
    """float16 needs its loss scaled (small gradients underflow); bfloat16 and float32 do not."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)
