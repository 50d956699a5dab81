"""``s2r-bench ui`` serves the project's MLflow store on localhost and prints where."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlflow.tracking import MlflowClient

CONSOLE_SCRIPT = str(Path(sys.executable).with_name("s2r-bench"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ui_serves_the_store_on_localhost_and_stops_on_ctrl_c(tracking_uri: str) -> None:
    MlflowClient(tracking_uri).create_experiment("gaze")
    port = free_port()
    process = subprocess.Popen([CONSOLE_SCRIPT, "ui", "--tracking-uri", tracking_uri, "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout.readline().strip() == (
            f"MLflow UI for {tracking_uri} at http://127.0.0.1:{port} (Ctrl-C stops it)")
        url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=10"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    names = {experiment["name"] for experiment in json.load(response)["experiments"]}
                break
            except OSError:
                assert process.poll() is None, "the UI exited"
                assert time.monotonic() < deadline, "the UI did not answer within 2 minutes"
                time.sleep(0.5)
        assert "gaze" in names
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def test_ui_refuses_a_broken_store(tmp_path: Path) -> None:
    broken = tmp_path / "mlflow.db"
    broken.write_text("not a database")
    finished = subprocess.run([CONSOLE_SCRIPT, "ui", "--tracking-uri", f"sqlite:///{broken}"],
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 2
    assert "is not an SQLite database" in finished.stderr
