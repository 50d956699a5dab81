"""The embedded eye domains: ``synth-eyes`` (clean renders) and ``webcam-eyes`` (a stand-in for real captures)."""

from sim2real_bench import hookimpl
from sim2real_bench.hookspecs import Register
from sim2real_bench.plugins.eyes.synthetic import SynthEyes
from sim2real_bench.plugins.eyes.webcam import WebcamEyes


@hookimpl
def register_datasets(register: Register) -> None:
    """Add the two procedural eye domains."""
    register("synth-eyes", SynthEyes)
    register("webcam-eyes", WebcamEyes)
