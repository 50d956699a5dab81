"""An example s2r-bench plugin: the ``example-blur`` refiner and the ``example-dots`` dataset.

The ``example-pupil`` task and its datasets register themselves from
``pupil.py``, a plugin module of its own (its own entry point).
"""

from sim2real_bench import hookimpl
from sim2real_bench.hookspecs import Register

from s2r_bench_example.blur import Blur
from s2r_bench_example.dots import Dots


@hookimpl
def register_refiners(register: Register) -> None:
    """Add ``example-blur``."""
    register("example-blur", Blur)


@hookimpl
def register_datasets(register: Register) -> None:
    """Add ``example-dots``."""
    register("example-dots", Dots)
