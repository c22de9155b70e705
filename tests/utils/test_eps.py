import math

import pytest

from robustbench_mr import UserError, parse_eps
from robustbench_mr.utils.eps import format_eps


@pytest.mark.parametrize(
    "text, expected",
    [("8/255", 8 / 255), ("2/255", 2 / 255), ("0.031", 0.031), (" 1/10 ", 0.1), ("1", 1.0), ("3e-2", 0.03), (0.5, 0.5)],
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


def test_parse_eps_l2_radius_may_exceed_one():
    assert parse_eps("2.5", max_value=None) == 2.5
    assert parse_eps("0", allow_zero=True) == 0.0


def test_format_eps_round_trip():
    assert format_eps(8 / 255) == "8/255"
    assert format_eps(0.1) == "0.1"
    assert parse_eps(format_eps(2 / 255)) == 2 / 255
