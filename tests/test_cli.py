"""The CLI: output of `khnet space`, JSON for scripts, and one-line errors instead of tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from khnet import __version__
from khnet.cli.main import main

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_space_table(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run(capsys, "space", BEST)
    assert code == 0 and err == ""
    for expected in (BEST, "6111", "153.27297 MFLOPs", "1.073466 M params", "94.37", "isomorphism class"):
        assert expected in out


def test_space_json(capsys):
    code, out, _ = run(capsys, "space", "6111", "--json")
    info = json.loads(out)
    assert code == 0 and info["arch"] == BEST and info["index"] == 6111
    assert info["cost"]["cifar10"] == {"mflops": 153.27297, "mparams": 1.073466}
    assert round(info["accuracy"]["cifar10/test"]["200ep"], 2) == 94.37


def test_version_and_help(capsys):
    assert run(capsys, "--version")[:2] == (0, f"khnet {__version__}\n")
    code, out, _ = run(capsys, "space", "--help")
    assert code == 0 and "Examples" in out


@pytest.mark.parametrize(
    ("arg", "fragment"),
    [
        ("15625", "out of range"),
        ("", "empty"),
        (
            "|nor_conv_3x3~0|+|nor_cov_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
            "position 19",
        ),
        ("|none~0|+|none~0|none~2|+|none~0|none~1|none~2|", "'~2' at position 22"),
        ("hello", "1 node(s)"),
    ],
)
def test_bad_input_is_one_line(capsys, arg, fragment):
    code, out, err = run(capsys, "space", arg)
    assert code == 2 and out == ""
    assert err.startswith("error:") and fragment in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3  # one message, soft-wrapped at most by the terminal


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="|+~0123 nonekipcvrus_x1", min_size=1, max_size=60))
def test_random_input_never_tracebacks(text):
    code = main(["space", text, "--json"])
    assert code in (0, 2)


def test_usage_errors(capsys):
    code, _, err = run(capsys, "space")
    assert code == 2 and "Missing argument" in err
    code, _, err = run(capsys, "nosuchcommand")
    assert code == 2 and "No such command" in err


def test_console_script_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "khnet.cli.main", "space", "0", "--json"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["index"] == 0


def test_space_dataset_filter(capsys):
    assert main(["space", "6111", "--dataset", "CIFAR-100", "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["accuracy"]) == [
        "cifar100/valid",
        "cifar100/test",
        "cifar100/ori-test",
    ]
    assert (
        main(["space", "6111", "--dataset", "mnist"]) == 2
        and "unknown benchmark dataset 'mnist'" in capsys.readouterr().err
    )


def test_debug_shows_the_traceback(capsys):
    from khnet.errors import ArchError

    assert main(["space", "15625"]) == 2  # one line, exit 2
    with pytest.raises(ArchError, match="out of range"):
        main(["--debug", "space", "15625"])
