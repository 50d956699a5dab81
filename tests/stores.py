"""MLflow stores for tests: a new one is a copy of an empty store made once per session.

Creating an SQLite store runs MLflow's schema migrations, about 3 s on a 2-core
CPU; copying a store that already has its tables takes milliseconds, and every
test still gets a store of its own.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

_template: Path | None = None


def _empty_store() -> Path:
    global _template
    if _template is None:
        from mlflow.tracking import MlflowClient

        folder = Path(tempfile.mkdtemp(prefix="s2r-bench-empty-store-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
        _template = folder / "mlflow.db"
    return _template


def store_in(folder: Path) -> str:
    """The URI of the SQLite store ``folder/mlflow.db``: the one already there (a relaunch), else a new, empty
    one with MLflow's tables in place."""
    path = folder / "mlflow.db"
    if not path.exists():
        shutil.copyfile(_empty_store(), path)
    return f"sqlite:///{path}"
