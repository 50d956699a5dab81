"""The embedded hand domains: ``synth-hands`` (clean depth renders) and ``kinect-hands``
(a stand-in for real captures)."""
