"""Where and in which precision the networks run, and the seeded randomness they draw.

CUDA when there is one, the CPU otherwise. Mixed precision is bf16 autocast: on
CUDA always, on CPUs with native bf16 (AVX-512 BF16 or AMX) because there it
roughly doubles convolution throughput; elsewhere fp32, since emulated bf16 is slower.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from sim2real_bench.config import DEVICES, PRECISIONS
from sim2real_bench.data import stable_seed
from sim2real_bench.errors import ConfigError, DeviceError



@dataclass(frozen=True)
class Compute:
    """A device plus the autocast dtype to use on it (``None``: plain fp32)."""

    device: torch.device
    autocast_dtype: torch.dtype | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context for forward passes on this device."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @property
    def precision(self) -> str:
        """``"bf16"`` or ``"fp32"``, for logs."""
        return "bf16" if self.autocast_dtype == torch.bfloat16 else "fp32"

    def describe(self) -> str:
        """A human-readable name of the hardware, for run params."""
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return f"cpu ({torch.get_num_threads()} threads)"


def cpu_has_native_bf16() -> bool:
    """True on CPUs whose instruction set computes bf16 natively."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_compute(device: str = "auto", precision: str = "auto") -> Compute:
    """Turn the ``--device`` and ``--precision`` choices into a :class:`Compute`."""
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for but this machine has no usable CUDA GPU; use --device cpu")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    target = torch.device("cuda" if use_cuda else "cpu")
    if precision == "fp32":
        return Compute(target)
    if precision == "bf16" or (use_cuda and torch.cuda.is_bf16_supported()) or (not use_cuda and cpu_has_native_bf16()):
        return Compute(target, torch.bfloat16)
    return Compute(target)


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's generators (CPU and CUDA)."""
    random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def seeded(seed: int, scope: str, compute: Compute) -> Iterator[None]:
    """Run a block with torch's global generators seeded from ``(seed, scope)`` and restored after.

    Each stage of a run draws from its own scope, so what it computes never
    depends on what ran before it in the process (a cached fit, another run of
    a sweep, a probe trained or loaded).
    """
    devices = [compute.device.index or 0] if compute.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(stable_seed(seed, scope))
        yield


class ImageNoise:
    """Standard normal draws for a batch, each image's from a generator seeded by a seed and the image's content.

    A refined image then depends only on the image, the fit and the seed: not on the batch it
    came in, the batch size or the device (draws are made on the CPU). Each call returns the next
    ``(N, *shape)`` block.
    """

    def __init__(self, images: Tensor, seed: int, scope: str, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.device = images.device
        self.generators = []
        for row in images.detach().float().cpu().numpy():
            digest = hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest()
            self.generators.append(torch.Generator().manual_seed(stable_seed(seed, scope, digest)))

    def __call__(self) -> Tensor:
        """The next draw for every image, on the images' device."""
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.generators]).to(self.device)
