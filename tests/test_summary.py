"""What `s2r-bench run` prints: a summary a person reads in seconds, beside the store's reference rows."""

from __future__ import annotations

from sim2real_bench.cli import main


def test_a_run_ends_with_a_short_summary_beside_the_none_run_of_the_same_seed(tracking_uri: str, capsys) -> None:
    common = ["--task", "gaze", "--budget", "smoke", "--no-progress", "--tracking-uri", tracking_uri]
    assert main(["run", "--refiner", "none", *common]) == 0
    capsys.readouterr()
    assert main(["run", "--refiner", "histmatch", *common]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) <= 9
    assert lines[0].startswith("histmatch on gaze, seed 0, budget smoke: run ")
    assert lines[1].split() == ["target", "angular_error", "within_7deg"]
    assert [line.split()[0] for line in lines[2:4]] == ["histmatch", "none"]
    assert lines[4].split()[:2] == ["mean", "label"]
    assert "label shift" in lines[5] and "realism: classifier" in lines[5]
    assert lines[6].strip().startswith("wall time (s): data")
    assert "s2r-bench ui --tracking-uri" in lines[7] and lines[0].split()[-1] in lines[7]
