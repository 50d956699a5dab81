"""The embedded eye domains: ``synth-eyes`` (clean renders) and ``webcam-eyes`` (a stand-in for real captures)."""
