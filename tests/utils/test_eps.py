import math

import pytest

from robustbench_mr import UserError, parse_eps
from robustbench_mr.utils.eps import format_eps


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8/255", 8 / 255), ("2/255", 2 / 255), ("0.031", 0.031), (" 1/10 ", 0.1), ("1", 1.0), ("3e-2", 0.03), (0.5, 0.5),
        ("1e-3", 0.001), (".5", 0.5), ("8 / 255", 8 / 255), ("1e-3/2", 0.0005),
    ],
)
def test_parse_eps_accepts(text, expected):
    assert math.isclose(parse_eps(text), expected, rel_tol=0, abs_tol=1e-15)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("-0.1", "negative"),
        ("-8/255", "negative"),
        ("8/0", "zero denominator"),
        ("abc", "not a number"),
        ("8/x", "not a number"),
        ("", "empty"),
        ("8", "exceeds"),
        ("1.5", "exceeds"),
        ("nan", "not"),
        ("0", "zero"),
        (True, "not a number"),
    ],
)
def test_parse_eps_rejects_with_reason(text, fragment):
    with pytest.raises(UserError) as err:
        parse_eps(text)
    msg = str(err.value)
    assert fragment in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("8/255/2", "it has 2 '/'"),  # was read as 8/(255/2) = 16/255
        ("8//255", "it has 2 '/'"),
        ("1/-255", "no signs inside"),
        ("+-1", "no signs inside"),
        (" /255", "not a number"),
        ("8/", "not a number"),
        ("nan", "not a number"),
        ("inf", "not a number"),
        ("-inf", "not a number"),
        ("0x10", "not a number"),
        ("1_000", "not a number"),
        ("\u0663/255", "not a number"),  # Arabic-Indic digit three
        ("1e999999999", "not a number"),  # exponent too long: never build 10**999999999
        ("1" * 65, "characters long"),
        ("1e999", "not finite"),
        ("1e-999", "rounds to 0"),
    ],
)
def test_parse_eps_grammar_is_strict(text, fragment):
    with pytest.raises(UserError) as err:
        parse_eps(text, max_value=None)
    msg = str(err.value)
    assert fragment in msg
    assert "\n" not in msg
    if "not a number" in msg:
        assert "A or A/B" in msg and "8/255" in msg  # says how to write a radius


def test_cli_bad_eps_is_a_usage_error_with_exit_2(capsys):
    import argparse

    from robustbench_mr.cli.common import eps_arg

    parser = argparse.ArgumentParser(prog="mr-train")
    parser.add_argument("--eps", type=eps_arg)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--eps", "8/255/2"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--eps" in err and "it has 2 '/'" in err
    assert parser.parse_args(["--eps", "8/255"]).eps == 8 / 255


def test_parse_eps_l2_radius_may_exceed_one():
    assert parse_eps("2.5", max_value=None) == 2.5
    assert parse_eps("0", allow_zero=True) == 0.0


def test_format_eps_round_trip():
    assert format_eps(8 / 255) == "8/255"
    assert format_eps(0.1) == "0.1"
    assert parse_eps(format_eps(2 / 255)) == 2 / 255
