"""Built-in downstream tasks of s2r-bench (installed as ``sim2real_bench.tasks``)."""
