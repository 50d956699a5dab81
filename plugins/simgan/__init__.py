"""The SimGAN refiner plugin (Shrivastava et al., CVPR 2017)."""

from sim2real_bench import hookimpl
from sim2real_bench.hookspecs import Register
from sim2real_bench.plugins.simgan.refiner import SimGAN, SimGANConfig


@hookimpl
def register_refiners(register: Register) -> None:
    """Add ``simgan``."""
    register("simgan", SimGAN)


__all__ = ["SimGAN", "SimGANConfig"]
