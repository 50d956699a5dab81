"""Inputs that must not hurt: each is refused with one line naming the problem and the fix, exit 2, no traceback,
before any expensive work (no data loaded, no MLflow run created, no server started)."""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from realdata import mpii_eye, write_mpiigaze_day

from stores import store_in

from sim2real_bench import checkpoint, tracking, ui
from sim2real_bench.plugins.simgan.refiner import SimGAN
from sim2real_bench.cli import main
from sim2real_bench.errors import TrackingError

CONSOLE_SCRIPT = str(Path(sys.executable).with_name("s2r-bench"))
RUN = ["run", "--refiner", "none", "--task", "gaze", "--budget", "smoke", "--no-progress"]
REFINE = ["refine", "--budget", "smoke", "--no-progress", "--tracking-uri", "{store}"]
SWEEP = ["sweep", "--refiners", "none", "--tasks", "gaze", "--seeds", "0", "--budget", "smoke", "--no-progress"]


@dataclass(frozen=True)
class Row:
    """One bad input: the command line (``{tmp}``, ``{store}``, ``{busy}`` are filled in; ``env:NAME=VALUE`` parts
    set an environment variable instead) and what the line says."""

    name: str
    argv: tuple[str, ...]
    says: str
    as_root: bool = True
    """False where root is not refused (root writes anywhere a permission bit forbids)."""


ROWS = [
    # Tracking stores
    Row("sqlite-two-slashes", (*RUN, "--tracking-uri", "sqlite://relative.db"), "use sqlite:///relative.db"),
    Row("sqlite-in-memory", (*RUN, "--tracking-uri", "sqlite://"), "in-memory database"),
    Row("unknown-scheme", (*RUN, "--tracking-uri", "foo://bar"), "supported: sqlite:///PATH"),
    Row("file-store", (*RUN, "--tracking-uri", "{tmp}/mlruns"), "file store"),
    Row("store-under-proc", (*RUN, "--tracking-uri", "sqlite:////proc/mlflow.db"), "cannot write to the folder /proc"),
    Row("store-folder-missing", (*RUN, "--tracking-uri", "sqlite:///{tmp}/missing/mlflow.db"), "does not exist"),
    Row("store-folder-read-only", (*RUN, "--tracking-uri", "sqlite:///{tmp}/read-only/mlflow.db"), "cannot write",
        as_root=False),
    Row("store-is-a-folder", (*RUN, "--tracking-uri", "sqlite:///{tmp}"), "is a folder, not a database file"),
    Row("store-not-sqlite", (*RUN, "--tracking-uri", "sqlite:///{tmp}/garbage.db"), "is not an SQLite database"),
    Row("store-of-another-application", (*RUN, "--tracking-uri", "sqlite:///{tmp}/contacts.db"),
        "another application's SQLite database (tables: contacts)"),
    Row("store-of-another-application-sweep", (*SWEEP, "--tracking-uri", "sqlite:///{tmp}/contacts.db"),
        "not an MLflow store"),
    Row("store-of-another-application-ui", ("ui", "--tracking-uri", "sqlite:///{tmp}/contacts.db"),
        "not an MLflow store"),
    Row("store-of-another-application-report", ("report", "--tracking-uri", "sqlite:///{tmp}/contacts.db"),
        "not an MLflow store"),
    Row("two-sweeps-on-one-store", (*SWEEP, "--tracking-uri", "{store}"), "another sweep (pid"),
    # The UI's address
    Row("port-out-of-range", ("ui", "--tracking-uri", "{store}", "--port", "99999"), "from 1 to 65535"),
    Row("port-negative", ("ui", "--tracking-uri", "{store}", "--port", "-1"), "from 1 to 65535"),
    Row("port-zero", ("ui", "--tracking-uri", "{store}", "--port", "0"), "from 1 to 65535"),
    Row("port-busy", ("ui", "--tracking-uri", "{store}", "--port", "{busy}"), "is in use"),
    Row("host-unknown", ("ui", "--tracking-uri", "{store}", "--host", "no-such-host.invalid"),
        "not an address of this machine"),
    Row("host-not-ours", ("ui", "--tracking-uri", "{store}", "--host", "192.0.2.1"), "cannot listen on 192.0.2.1"),
    # The cache folder
    Row("cache-under-proc", ("env:S2R_BENCH_CACHE=/proc/s2r-bench", *RUN, "--tracking-uri", "{store}"),
        "cache folder /proc/s2r-bench cannot be created"),
    Row("cache-read-only", ("env:S2R_BENCH_CACHE={tmp}/read-only/cache", *RUN, "--tracking-uri", "{store}"),
        "cannot be created", as_root=False),
    # Settings, refused when the plan is made
    Row("batch-size-zero", (*RUN, "--tracking-uri", "{store}", "--set", "task.batch_size=0"), "batch_size must"),
    Row("batch-size-negative", (*RUN, "--tracking-uri", "{store}", "--set", "task.batch_size=-1"), "batch_size must"),
    Row("epochs-negative", (*RUN, "--tracking-uri", "{store}", "--set", "task.epochs=-1"), "epochs must"),
    Row("lr-nan", (*RUN, "--tracking-uri", "{store}", "--set", "task.lr=nan"), "lr must"),
    Row("seed-too-large", (*RUN, "--tracking-uri", "{store}", "--seed", str(2**70)), "--seed"),
    Row("data-larger-than-memory", (*RUN, "--tracking-uri", "{store}", "--set", "data.source_train=1000000000000"),
        "GiB"),
    # Checkpoints given to refine: refused before any data is loaded, and never by running the file's code
    Row("checkpoint-missing-key", (*REFINE, "--out", "{tmp}/new", "--checkpoint", "{tmp}/missing-key.pt"), "is a damaged refiner checkpoint"),
    Row("checkpoint-wrong-widths", (*REFINE, "--out", "{tmp}/new", "--checkpoint", "{tmp}/wrong-widths.pt"),
        "is a damaged refiner checkpoint"),
    Row("checkpoint-with-code", (*REFINE, "--out", "{tmp}/new", "--checkpoint", "{tmp}/code.pt"), "does not load as plain tensors"),
    # Datasets
    Row("folder-that-is-a-symlink-loop", (*RUN, "--tracking-uri", "{store}", "--source", "folder:{tmp}/loop-a"),
        "cannot be resolved"),
    Row("mpiigaze-gaze-that-is-text", (*RUN, "--tracking-uri", "{store}", "--target", "mpiigaze:{tmp}/mpiigaze-text"),
        "data.left.gaze is not numbers"),
    # Export destinations
    Row("export-over-a-folder-that-is-not-an-export", (*REFINE, "--out", "{tmp}/photos", "--refiner", "none", "--overwrite"),
        "is not an export of s2r-bench"),
    Row("export-to-the-current-folder", (*REFINE, "--out", ".", "--refiner", "none"),
        "is the current folder or one above it"),
    Row("export-to-a-symlink", (*REFINE, "--out", "{tmp}/link", "--refiner", "none"), "is a symbolic link"),
]


@pytest.fixture
def places(tmp_path: Path) -> dict[str, str]:
    """The files the rows name: a stranger's SQLite file, a non-database, a read-only folder, damaged
    checkpoints, a symlink loop and a symlink, a folder that is not an export, an MPIIGaze day with text gaze."""
    with sqlite3.connect(tmp_path / "contacts.db") as db:
        db.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
    (tmp_path / "garbage.db").write_text("not a database")
    (tmp_path / "read-only").mkdir(mode=0o555)
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.png").write_bytes(b"")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    gazes = np.array([[0.0, 0.0, -1.0]] * 2)  # into the camera
    write_mpiigaze_day(tmp_path / "mpiigaze-text/Data/Normalized/p01/day01.mat", gazes, gazes, fields={
        "data": {"left": {"image": np.stack([mpii_eye()] * 2), "gaze": np.array(["up", "down"])},
                 "right": {"image": np.stack([mpii_eye()] * 2), "gaze": gazes}}})
    refiner = SimGAN(SimGAN.presets["smoke"], (1, 35, 55))
    checkpoint.save("simgan", refiner, "equalize=True", tmp_path / "good.pt")
    good = torch.load(tmp_path / "good.pt", weights_only=True)
    torch.save({**good, "state": {}}, tmp_path / "missing-key.pt")
    wide = SimGAN(dataclasses.replace(SimGAN.presets["smoke"], width=12), (1, 35, 55))
    torch.save({**good, "state": wide.state_dict()}, tmp_path / "wrong-widths.pt")
    torch.save({"format": checkpoint.FORMAT, "payload": Payload()}, tmp_path / "code.pt")
    return {"tmp": str(tmp_path), "store": store_in(tmp_path)}


class Payload:
    """What a malicious checkpoint pickles: unpickling it would run code."""

    def __reduce__(self) -> tuple:
        return (os.system, ("touch /tmp/s2r-bench-pwned",))


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.fixture
def nothing_expensive(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the row, instead of doing the work, if a command gets as far as MLflow or the UI server."""
    def refused_too_late(*args: object, **kwargs: object) -> None:
        raise AssertionError("reached MLflow or the UI server before refusing the input")

    monkeypatch.setattr(tracking, "client", refused_too_late)
    monkeypatch.setattr(tracking, "tracked_run", refused_too_late)
    monkeypatch.setattr(ui, "serve", refused_too_late)


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_bad_input_is_one_line_and_exit_2(row: Row, places: dict[str, str], busy_port: int, nothing_expensive: None,
                                          capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    if not row.as_root and os.geteuid() == 0:
        pytest.skip("root writes through permission bits")
    argv = [part.format(busy=busy_port, **places) for part in row.argv]
    for setting in [part for part in argv if part.startswith("env:")]:
        monkeypatch.setenv(*setting.removeprefix("env:").split("=", 1))
        argv.remove(setting)
    with tracking.store_lock(places["store"]):  # held as a running sweep would; only a sweep asks for it
        status = main(argv)
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("s2r-bench: error:") and row.says in err, err
    assert "Traceback" not in err and "weights_only" not in err, err


def test_a_refusal_from_the_console_script_is_one_line_without_traceback(tmp_path: Path) -> None:
    finished = subprocess.run([CONSOLE_SCRIPT, *RUN, "--tracking-uri", "sqlite://relative.db"],
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines() == [finished.stderr.strip()]
    assert finished.stderr.startswith("s2r-bench: error: tracking URI 'sqlite://relative.db' has two slashes")


def mlflow_tables(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE alembic_version (version_num TEXT)")
        db.execute("CREATE TABLE experiments (experiment_id INTEGER)")


def test_an_mlflow_store_a_new_file_and_an_empty_file_are_accepted(tmp_path: Path) -> None:
    mlflow_tables(tmp_path / "mlflow.db")
    (tmp_path / "empty.db").touch()
    for name in ("mlflow.db", "new.db", "empty.db"):
        tracking.check_tracking_uri(f"sqlite:///{tmp_path / name}")
    tracking.check_tracking_uri("http://127.0.0.1:5000")
    tracking.check_tracking_uri("postgresql+psycopg2://user@db/mlflow")


def test_a_store_that_is_refused_is_left_untouched(tmp_path: Path) -> None:
    stranger = tmp_path / "contacts.db"
    with sqlite3.connect(stranger) as db:
        db.execute("CREATE TABLE contacts (name TEXT)")
    before = stranger.read_bytes()
    with pytest.raises(TrackingError, match="not an MLflow store"):
        tracking.check_tracking_uri(f"sqlite:///{stranger}")
    assert stranger.read_bytes() == before


def test_the_store_lock_refuses_a_second_holder_and_is_free_again_after(tmp_path: Path) -> None:
    uri = store_in(tmp_path)
    with tracking.store_lock(uri):
        with pytest.raises(TrackingError, match=rf"another sweep \(pid {os.getpid()}\) is using the tracking store"):
            with tracking.store_lock(uri):
                pass
    with tracking.store_lock(uri):
        pass
    assert (tmp_path / "mlflow.db.lock").exists()
    with tracking.store_lock("http://127.0.0.1:5000"), tracking.store_lock("http://127.0.0.1:5000"):
        pass  # a tracking server is not locked here


def test_the_store_lock_names_the_other_process_and_frees_when_it_dies(tmp_path: Path) -> None:
    uri = store_in(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from sim2real_bench import tracking\n"
         f"with tracking.store_lock({uri!r}):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TrackingError, match=rf"another sweep \(pid {holder.pid}\)"), tracking.store_lock(uri):
            pass
    finally:
        holder.kill()
        holder.wait()
    with tracking.store_lock(uri):
        pass


def test_sigterm_ends_a_run_killed_like_ctrl_c(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = store_in(tmp_path)
    client = MlflowClient(uri)
    client.search_experiments()  # create the store here: two processes migrating one new store crash
    environment = {**os.environ, "S2R_BENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([CONSOLE_SCRIPT, "run", "--refiner", "simgan", "--task", "gaze", "--budget", "smoke",
                                "--no-progress", "--tracking-uri", uri],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        deadline = time.monotonic() + 180
        while True:
            experiment = client.get_experiment_by_name("gaze")
            runs = client.search_runs([experiment.experiment_id]) if experiment is not None else []
            if runs:
                break
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "no MLflow run within 3 minutes"
            time.sleep(0.2)
        time.sleep(1.0)  # into the run's body, past its creation
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode in (130, 143)
    assert stderr.strip().splitlines()[-1] == "s2r-bench: terminated (SIGTERM)", stderr
    assert "Traceback" not in stderr
    assert client.get_run(runs[0].info.run_id).info.status == "KILLED"


def test_sigterm_and_an_inherited_ignored_sigint_both_interrupt_and_the_handlers_come_back() -> None:
    from sim2real_bench.signals import Terminated, sigterm_as_interrupt

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell's background job starts
    try:
        with pytest.raises(Terminated), sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, before)


class FillingDisk(io.FileIO):
    """A file on a disk with ``room`` bytes left: the write that would pass it fails as a full disk does."""

    room = 4096

    def write(self, data: bytes) -> int:
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.name)
        return super().write(data)


def test_a_full_disk_while_caching_is_one_line_exit_2_and_leaves_no_partial_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow.tracking import MlflowClient

    from sim2real_bench import store

    cache = tmp_path / "cache"
    monkeypatch.setenv("S2R_BENCH_CACHE", str(cache))
    monkeypatch.setattr(store, "open", lambda path, mode: FillingDisk(path, "w"), raising=False)
    uri = store_in(tmp_path)
    MlflowClient(uri).search_experiments()  # create the store first: MLflow logs its creation
    capsys.readouterr()
    status = main([*RUN, "--tracking-uri", uri])
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"s2r-bench: error: no space left on the device writing {cache}"), err
    assert not [path for path in cache.rglob("*") if "partial" in path.name]
    runs = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("gaze").experiment_id])
    assert [run.info.status for run in runs] == ["FAILED"]


def test_a_full_disk_during_an_export_keeps_the_earlier_export_and_leaves_no_partial_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    monkeypatch.setenv("S2R_BENCH_CACHE", str(tmp_path / "cache"))
    argv = [*(part.format(store=store_in(tmp_path)) for part in REFINE), "--refiner", "none",
            "--out", str(tmp_path / "export"), "--limit", "40"]
    assert main(argv) == 0
    before = {path.name: path.read_bytes() for path in (tmp_path / "export").iterdir()}
    capsys.readouterr()

    written = []
    real_save = Image.Image.save

    def save_until_full(image: Image.Image, path: Path, *args: object, **kwargs: object) -> None:
        if len(written) == 25:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        written.append(path)
        real_save(image, path, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_until_full)
    status = main([*argv, "--overwrite"])
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1 and "no space left on the device writing" in err, err
    assert {path.name: path.read_bytes() for path in (tmp_path / "export").iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".export")) == [".export.lock"]


@pytest.mark.slow  # the Ctrl-C case of test_export checks the same partial folder in the default run
def test_sigterm_during_refine_leaves_no_partial_folder_and_the_run_killed(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = store_in(tmp_path)
    client = MlflowClient(uri)
    client.search_experiments()  # create the store here: two processes migrating one new store crash
    environment = {**os.environ, "S2R_BENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "export"
    process = subprocess.Popen([CONSOLE_SCRIPT, *(part.format(store=uri) for part in REFINE), "--refiner", "simgan",
                                "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        deadline = time.monotonic() + 180
        while not list(tmp_path.glob(".export.partial-*")):
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "the export wrote nothing within 3 minutes"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "s2r-bench: terminated (SIGTERM)", stderr
    assert "Traceback" not in stderr
    assert not out.exists()
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".export")) == [".export.lock"]
    runs = client.search_runs([client.get_experiment_by_name("gaze").experiment_id])
    assert [run.info.status for run in runs] == ["KILLED"]
