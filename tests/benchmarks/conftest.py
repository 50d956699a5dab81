"""Everything under tests/benchmarks is a throughput measurement, run on demand:

    pytest tests/benchmarks -m benchmark
"""

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items, so mark only the ones in this folder.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.benchmark)
