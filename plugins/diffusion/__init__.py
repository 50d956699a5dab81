"""Diffusion refiners: ``sdedit`` (SDEdit over a DDPM trained on target images, with optional ILVR guidance).

``sampling.py`` holds the schedule, SDEdit's noising, DDIM steps and ILVR's
low-pass guidance; ``denoiser.py`` the diffusers UNet and its weight average;
``sdedit.py`` the refiner, its config and presets. diffusers is imported only
when a denoiser or schedule is built.
"""
