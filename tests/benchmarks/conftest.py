"""Everything under tests/benchmarks is a throughput measurement, run on demand:

    pytest tests/benchmarks -m benchmark
"""

from pathlib import Path

import pytest

from sim2real_bench.allocator import keep_freed_memory

HERE = Path(__file__).parent

# A run's process keeps freed memory for reuse (runner.execute): stages are measured in the same state.
keep_freed_memory()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items, so mark only the ones in this folder.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.benchmark)
