"""The built-in plugins: what each one registers, by reference, so that loading them imports no module of theirs.

Each entry point of this project's distribution names one :class:`BuiltIn` here
(``simgan = "sim2real_bench.plugins.builtin:simgan"``). A reference is imported when a run
first needs its class, and ``s2r-bench list`` reads its summary from source, so
listing and ``--help`` never import torch. A third-party plugin may register
classes or references alike (docs/writing-a-plugin.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sim2real_bench import hookimpl
from sim2real_bench.hookspecs import Register


def _register_all(references: Mapping[str, str], register: Register) -> None:
    for name, reference in references.items():
        register(name, reference)


@dataclass(frozen=True)
class BuiltIn:
    """One built-in plugin: the names it adds of each kind, each with its ``"module:Class"`` reference."""

    refiners: Mapping[str, str] = field(default_factory=dict)
    datasets: Mapping[str, str] = field(default_factory=dict)
    tasks: Mapping[str, str] = field(default_factory=dict)

    @hookimpl
    def register_refiners(self, register: Register) -> None:
        _register_all(self.refiners, register)

    @hookimpl
    def register_datasets(self, register: Register) -> None:
        _register_all(self.datasets, register)

    @hookimpl
    def register_tasks(self, register: Register) -> None:
        _register_all(self.tasks, register)


PACKAGE = "sim2real_bench.plugins"

none = BuiltIn(refiners={"none": f"{PACKAGE}.identity:Identity"})
histmatch = BuiltIn(refiners={"histmatch": f"{PACKAGE}.histmatch:HistMatch"})
fda = BuiltIn(refiners={"fda": f"{PACKAGE}.fda:FDA"})
randomize = BuiltIn(refiners={"randomize": f"{PACKAGE}.randomize:Randomize"})
simgan = BuiltIn(refiners={"simgan": f"{PACKAGE}.simgan.refiner:SimGAN"})
cyclegan = BuiltIn(refiners={"cyclegan": f"{PACKAGE}.cyclegan:CycleGAN"})
cut = BuiltIn(refiners={"cut": f"{PACKAGE}.cut:CUT"})
unsb = BuiltIn(refiners={"unsb": f"{PACKAGE}.unsb:UNSB"})
sdedit = BuiltIn(refiners={"sdedit": f"{PACKAGE}.diffusion.sdedit:SDEdit"})

eyes = BuiltIn(datasets={"synth-eyes": f"{PACKAGE}.eyes.synthetic:SynthEyes",
                         "webcam-eyes": f"{PACKAGE}.eyes.webcam:WebcamEyes"})
hands = BuiltIn(datasets={"synth-hands": f"{PACKAGE}.hands.synthetic:SynthHands",
                          "kinect-hands": f"{PACKAGE}.hands.kinect:KinectHands"})
unityeyes = BuiltIn(datasets={"unityeyes": f"{PACKAGE}.unityeyes:UnityEyes"})
mpiigaze = BuiltIn(datasets={"mpiigaze": f"{PACKAGE}.mpiigaze:MPIIGaze"})
nyu_hand = BuiltIn(datasets={"nyu-hand": f"{PACKAGE}.hands.nyu:NyuHands"})
folder = BuiltIn(datasets={"folder": f"{PACKAGE}.folder:Folder"})

gaze = BuiltIn(tasks={"gaze": "sim2real_bench.tasks.gaze:GazeTask"})
hand = BuiltIn(tasks={"hand": "sim2real_bench.tasks.hand:HandTask"})
