"""Hook specifications: the whole plugin contract of s2r-bench.

Every hook is a *registrar*: the plugin calls ``register(name, factory)`` once per
thing it adds, so the registry can reject a duplicate name and say which two
plugins clash (the style of ``llm``'s ``register_models``).
"""

from collections.abc import Callable
from typing import Any

import pluggy

from sim2real_bench import PROJECT_NAME

hookspec = pluggy.HookspecMarker(PROJECT_NAME)

Register = Callable[[str, Any], None]


@hookspec
def register_refiners(register: Register) -> None:
    """Register refiner classes: ``register("simgan", SimGAN)``.

    A refiner class subclasses :class:`sim2real_bench.refiner.Refiner`.
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register dataset classes: ``register("synth-eyes", SynthEyes)``.

    A dataset class subclasses :class:`sim2real_bench.data.Dataset`; it is built
    from a spec ``name`` or ``name:ARGUMENT`` (e.g. ``unityeyes:/data/UnityEyes``).
    """


@hookspec
def register_tasks(register: Register) -> None:
    """Register downstream task classes: ``register("gaze", GazeTask)``.

    A task class subclasses :class:`sim2real_bench.task.Task`.
    """
