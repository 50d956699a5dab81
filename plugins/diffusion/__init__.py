"""Diffusion refiners: ``sdedit`` (SDEdit over a DDPM trained on target images, with optional ILVR guidance).

``sampling.py`` holds the schedule, SDEdit's noising, DDIM steps and ILVR's
low-pass guidance; ``denoiser.py`` the diffusers UNet and its weight average;
``sdedit.py`` the refiner, its config and presets. diffusers is imported only
when a denoiser or schedule is built, so loading the plugin costs nothing.
"""

from sim2real_bench import hookimpl
from sim2real_bench.hookspecs import Register
from sim2real_bench.plugins.diffusion.sdedit import SDEdit, SDEditConfig

__all__ = ["SDEdit", "SDEditConfig"]


@hookimpl
def register_refiners(register: Register) -> None:
    """Add ``sdedit``."""
    register("sdedit", SDEdit)
