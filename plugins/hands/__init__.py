"""The embedded hand domains: ``synth-hands`` (clean depth renders) and ``kinect-hands``
(a stand-in for real captures)."""

from sim2real_bench import hookimpl
from sim2real_bench.hookspecs import Register
from sim2real_bench.plugins.hands.kinect import KinectHands
from sim2real_bench.plugins.hands.synthetic import SynthHands


@hookimpl
def register_datasets(register: Register) -> None:
    """Add the two procedural hand domains."""
    register("synth-hands", SynthHands)
    register("kinect-hands", KinectHands)
