"""The CLI's parsers driven with random values for every option: never an internal error or a traceback; a bad
value is a usage error (exit 2) in one line, a good value reaches the work and fails there (exit 1) because the
supernet, checkpoint or dataset named beside it does not exist."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from khnet.cli.main import main

MISSING = "/nonexistent/khnet-fuzz"

values = st.one_of(
    st.integers(min_value=-(10**7), max_value=10**7).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "0", "-1", "1e400", "-5M", "5M", "0.5m", "nan", "inf", "-inf", "1_000", "9" * 40, "abc"]),
    st.text(alphabet="0123456789.eE+-kKmMgG x", max_size=10),
)

COMMANDS = {
    "eval": (["eval", MISSING, "1"], ["--batch-size", "--test-images", "--calib-images", "--sample", "--seed",
                                      "--split", "--device"]),
    "search": (["search", "-s", MISSING], ["--max-flops", "--max-params", "--max-latency-ms", "--top", "--max-evals",
                                           "--test-images", "--calib-images", "--latency-batch", "--budget-net",
                                           "--seed"]),
    "sample": (["sample", "1", "-s", MISSING, "-o", f"{MISSING}/net.pt"], ["--calib-images", "--seed"]),
    "train": (["train", "--dataset", f"imagefolder:{MISSING}"], ["--epochs", "--batch-size", "--lr", "--tau",
                                                                  "--num-subnets", "--warmup-epochs", "--seed",
                                                                  "--residual-gain", "--hidden", "--channels"]),
    "space": (["space"], []),
}  # fmt: skip


def _check(capsys, argv: list[str]) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code in (1, 2), (argv, code, err)
    assert "internal error" not in err and "Traceback" not in err, (argv, err)
    if code == 1:  # reached the work: it failed on the missing supernet / checkpoint / data, in one line
        assert err.startswith("error:") and len(err.strip().splitlines()) <= 3, (argv, err)


@pytest.mark.parametrize("command", [c for c in COMMANDS if COMMANDS[c][1]])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_option_values_never_crash(command, data, capsys, tmp_path_factory):
    base, options = COMMANDS[command]
    argv = list(base)
    if command == "train":
        argv += ["-o", str(tmp_path_factory.mktemp("fuzz") / "run")]
    for option in data.draw(st.lists(st.sampled_from(options), min_size=1, max_size=3, unique=True)):
        argv += [option, data.draw(values)]
    _check(capsys, argv)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arch=st.one_of(st.integers(min_value=-(10**30), max_value=10**30).map(str), st.text(max_size=40)))
def test_random_archs_never_crash(arch, capsys):
    code = main(["space", arch])
    err = capsys.readouterr().err
    assert code in (0, 2) and "internal error" not in err, (arch, err)


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (["train", "--epochs", "0"], 2, "epochs"),
        (["train", "--method", "weight-sharing", "--generator", "paper"], 2, "--method weight-sharing has none"),
        (["train", "--no-distill", "--distill-warmup-epochs", "3"], 2, "drop one"),
        (["train", "--resume", MISSING, "--lr", "0.1", "--dataset", "cifar10"], 2, "drop --lr, --dataset"),
        (["train", "--resume", MISSING, "--epochs", "3"], 1, "no checkpoint"),
        (["train", "--dataset", f"imagefolder:{MISSING}", "--momentum", "5"], 2, "momentum"),
        (["train", "--dataset", f"imagefolder:{MISSING}", "--stop-after-epochs", "0"], 2, "stop-after-epochs"),
        (["train", "--dataset", f"imagefolder:{MISSING}", "--lr", "inf"], 2, "finite"),
        (["train", "--dataset", f"imagefolder:{MISSING}", "--seed", "9" * 25], 2, "seed"),
        (["train", "--dataset", f"imagefolder:{MISSING}", "--lr", "nan"], 2, "lr=nan"),
        (["eval", MISSING, "6111", "--all"], 2, "--all evaluates every arch"),
        (["eval", MISSING, "--sample", "3", "--all"], 2, "--all evaluates every arch"),
        (["eval", MISSING, "1", "--calib-images", "0"], 2, "calib-images"),
        (["eval", MISSING, "1", "--batch-size", "0"], 2, "batch-size"),
        (["eval", MISSING, "1", "--device", "tpu"], 2, "device 'tpu'"),
        (["eval", "hf://../../etc", "1"], 1, "not a Hub repository id"),
        (["eval", "hf://a b/c", "1"], 1, "hf://ORG/NAME[@REVISION]"),
        (["search", "-s", MISSING, "--max-flops", ""], 2, "not a number"),
        (["search", "-s", MISSING, "--max-flops", "1e400"], 2, "positive, finite"),
        (["search", "-s", MISSING, "--max-flops", "-5M"], 2, "positive, finite"),
        (["search", "-s", MISSING, "--max-latency-ms", "-2"], 2, "positive number of milliseconds"),
        (["search", "-s", MISSING, "--top", "0"], 2, "top"),
        (["search", "-s", MISSING, "--max-evals", "0"], 2, "max-evals"),
        (["search", "-s", MISSING, "--test-images", "0"], 2, "test-images"),
        (["search", "-s", MISSING, "--budget-net", "phone"], 2, "choose deployed or benchmark"),
        (["space", "9" * 5000], 2, "out of range"),
        (["export", MISSING], 2, "say where to"),
    ],
)
def test_bad_values_get_one_line_and_the_right_exit_code(capsys, argv, code, fragment):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert fragment in err and "internal error" not in err and "Traceback" not in err, err
