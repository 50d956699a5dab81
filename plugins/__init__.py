"""Built-in refiners and datasets of s2r-bench (installed as ``sim2real_bench.plugins``)."""
