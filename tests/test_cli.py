"""The sksketch command."""

import re
import subprocess
import sys

import pytest

from sksketch._cli import main

SMALL = ["demo", "--n-samples", "2000", "--n-features", "1000", "--n-labels", "1500",
         "--epochs", "3", "--n-jobs", "1"]


def test_demo_trains_and_reports(capsys):
    assert main(SMALL) == 0
    out = capsys.readouterr().out
    assert "1,500 labels" in out
    assert "samples/s" in out
    p1 = [float(v) for v in re.findall(r"P@1 ([0-9.]+)", out)]
    assert len(p1) == 2 and all(0 <= v <= 1 for v in p1)
    # learnable: far above the chance of guessing the most frequent label
    assert p1[0] > 0.15


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "sksketch", *SMALL], capture_output=True,
                         text=True, check=True).stdout
    assert "inference='full' (exact scores): P@1" in out and "inference='lsh'" in out


@pytest.mark.parametrize("argv", [[], ["nope"], ["demo", "--n-labels", "0"],
                                  ["demo", "--epochs", "x"]])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: sksketch" in capsys.readouterr().err
