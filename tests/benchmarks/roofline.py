"""A stage's achieved FLOP/s as a share of this machine's peak for its dominant operation, measured in the same run.

The peak is not a datasheet number: it is the FLOP/s of the one convolution that
costs the stage most (same channels, kernel, stride and input shape), run alone,
channels-last, in the precision the stage runs in, forward only for refining and
forward plus backward for training. A stage at 0.9 of it spends its time in
that convolution's best kernel; a stage at 0.2 loses it elsewhere (small layers,
memory traffic, Python). FLOPs are counted by ``torch.utils.flop_counter``
(convolutions and matrix products, forward and backward), the same way for the
stage and for its peak, so the share does not depend on the counting convention.

Every benchmark calls :func:`record_share` after timing its stage::

    benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    record_share(benchmark, step, dominant_conv(networks_of(refiner), step), compute, train=True)

and finds in ``extra_info``: ``gflops_per_call``, ``achieved_gflops_per_second``,
``peak_gflops_per_second``, ``share_of_peak`` and ``peak_operation``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from sim2real_bench.device import Compute

MIN_SECONDS = 0.25
"""Each timed repetition of the peak runs the convolution for at least this long."""
REPEATS = 5


def count_flops(call: Callable[[], object]) -> int:
    """FLOPs of one call (convolutions and matrix products, forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        call()
    return counter.get_total_flops()


@dataclass(frozen=True)
class ConvShape:
    """One convolution as a stage ran it: the layer's hyper-parameters and its input's shape."""

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...] | str
    dilation: tuple[int, ...]
    groups: int
    input_shape: tuple[int, ...]

    def describe(self) -> str:
        kernel = "x".join(map(str, self.kernel_size))
        return (f"conv {self.in_channels}->{self.out_channels} {kernel} stride {self.stride[0]} "
                f"on {'x'.join(map(str, self.input_shape))}")

    def build(self, device: torch.device) -> nn.Conv2d:
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                         self.dilation, self.groups)
        return conv.to(device, memory_format=torch.channels_last)

    def flops(self) -> int:
        """Forward FLOPs of this convolution on its input (two per multiply-add)."""
        conv = self.build(torch.device("meta"))
        return count_flops(lambda: conv(torch.empty(self.input_shape, device="meta")))


def dominant_conv(modules: Iterable[nn.Module], call: Callable[[], object]) -> ConvShape:
    """The convolution of ``modules`` that costs ``call`` the most FLOPs, with the input shape it saw."""
    seen: dict[ConvShape, int] = {}

    def remember(layer: nn.Conv2d, inputs: tuple[Tensor, ...], _: Tensor) -> None:
        shape = ConvShape(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                          layer.dilation, layer.groups, tuple(inputs[0].shape))
        seen[shape] = seen.get(shape, 0) + 1

    handles = [layer.register_forward_hook(remember) for module in modules
               for layer in module.modules() if isinstance(layer, nn.Conv2d)]
    try:
        call()
    finally:
        for handle in handles:
            handle.remove()
    if not seen:
        raise ValueError("the call ran no nn.Conv2d of the given modules")
    return max(seen, key=lambda shape: shape.flops() * seen[shape])


def peak_flops_per_second(shape: ConvShape, compute: Compute, train: bool) -> float:
    """FLOP/s of ``shape`` alone, channels-last, under ``compute``'s autocast; best of :data:`REPEATS`."""
    conv = shape.build(compute.device)
    example = torch.randn(shape.input_shape, device=compute.device).contiguous(memory_format=torch.channels_last)
    if train:
        example.requires_grad_(True)

    def once() -> None:
        with compute.autocast():
            output = conv(example)
        if train:
            output.float().sum().backward()

    run = once if train else torch.inference_mode()(once)
    run()
    flops = count_flops(run)
    calls = 1
    while _timed(run, calls, compute) < MIN_SECONDS:
        calls *= 2
    return flops * calls / min(_timed(run, calls, compute) for _ in range(REPEATS))


def _timed(call: Callable[[], None], calls: int, compute: Compute) -> float:
    if compute.device.type == "cuda":
        torch.cuda.synchronize(compute.device)
    start = time.perf_counter()
    for _ in range(calls):
        call()
    if compute.device.type == "cuda":
        torch.cuda.synchronize(compute.device)
    return time.perf_counter() - start


def networks_of(owner: object) -> list[nn.Module]:
    """Every network an object (a refiner, a task) holds as an attribute."""
    return [value for value in vars(owner).values() if isinstance(value, nn.Module)]


def record_share(benchmark, call: Callable[[], object], peak_operation: ConvShape, compute: Compute,
                 train: bool) -> float:
    """Put the timed ``call``'s FLOP/s, the peak of ``peak_operation`` and their ratio into ``extra_info``."""
    flops = count_flops(call)
    achieved = flops / benchmark.stats.stats.mean
    peak = peak_flops_per_second(peak_operation, compute, train)
    benchmark.extra_info.update({
        "gflops_per_call": flops / 1e9, "achieved_gflops_per_second": achieved / 1e9,
        "peak_gflops_per_second": peak / 1e9, "share_of_peak": achieved / peak,
        "peak_operation": f"{peak_operation.describe()} ({'forward+backward' if train else 'forward'}, "
                          f"{compute.precision})",
    })
    return achieved / peak
