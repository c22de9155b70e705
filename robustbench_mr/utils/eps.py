"""Parsing of perturbation radii as users type them: ``8/255``, ``0.031``, ``2/255``."""

from __future__ import annotations

import math
import numbers
import re
from fractions import Fraction

from robustbench_mr.errors import UserError

# A plain, unsigned decimal: digits with an optional fraction part (``8``, ``0.031``, ``.5``,
# ``1.``) and an optional short exponent (``1e-3``, ``3E-2``). ASCII digits only: no sign,
# no ``_`` separators, no hex, no ``nan``/``inf``. The exponent has at most 3 digits so that
# exact (Fraction) evaluation can never be asked to build a gigantic integer.
_DECIMAL = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?"
# ``a`` or ``a/b`` (spaces allowed around the slash); a leading ``-`` is matched only so that
# a negative radius gets the specific "negative" message instead of a grammar error.
_RADIUS = re.compile(rf"(?P<neg>-)?(?P<num>{_DECIMAL})(?:\s*/\s*(?P<den>{_DECIMAL}))?")
# Longer text is never a radius; the cap keeps int/Fraction conversion cheap.
_MAX_LEN = 64
_HOW = "write a radius as A or A/B with A, B plain decimal numbers, e.g. 8/255, 0.031 or 1e-3"


def _grammar_error(shown: str, s: str) -> UserError:
    """The one-line refusal for text that does not follow the ``A`` / ``A/B`` grammar."""
    slashes = s.count("/")
    if slashes > 1:
        return UserError(f"eps {shown} is not a number: it has {slashes} '/' but a fraction has one; {_HOW} "
                         "(half of 8/255 is 4/255, not 8/255/2)")
    if "+" in s.replace("e+", "").replace("E+", "") or "-" in s.lstrip("-").replace("e-", "").replace("E-", ""):
        return UserError(f"eps {shown} is not a number: a radius has no signs inside it; {_HOW}")
    return UserError(f"eps {shown} is not a number; {_HOW}")


def _parse_text(shown: str, text: str) -> float:
    """The value of ``text`` under the radius grammar (the sign is kept for the caller's checks)."""
    s = text.strip()
    if not s:
        raise UserError(f"eps is empty; {_HOW}")
    if len(s) > _MAX_LEN:
        raise UserError(f"eps {shown[:40]}... is {len(s)} characters long, not a number; {_HOW}")
    m = _RADIUS.fullmatch(s)
    if m is None:
        raise _grammar_error(shown, s)
    value = Fraction(m["num"])
    if m["den"] is not None:
        den = Fraction(m["den"])
        if den == 0:
            raise UserError(f"eps {shown} has a zero denominator; write e.g. 8/255")
        value /= den
    if m["neg"]:
        value = -value
    try:
        result = float(value)
    except OverflowError:  # e.g. 1e999: larger than any float
        return math.inf if value > 0 else -math.inf
    if result == 0 and value != 0:  # e.g. 1e-999: would silently become a zero radius
        raise UserError(f"eps {shown} is too small to be a float (it rounds to 0); write e.g. 8/255 or 0.031")
    return result


def parse_eps(text: str | float | int, *, allow_zero: bool = False, max_value: float | None = 1.0) -> float:
    """Return the radius written in ``text`` as a float in pixel units ([0, 1] images).

    Grammar for text, after stripping surrounding whitespace: exactly ``A`` or ``A/B``
    (spaces around the ``/`` are allowed), where ``A`` and ``B`` are plain unsigned decimal
    numbers: ASCII digits with an optional fraction part (``8``, ``0.031``, ``.5``) and an
    optional exponent of at most 3 digits, which we count as decimal notation (``1e-3``,
    ``3E-2``). Everything else is refused with a message that says how to write a radius:
    several slashes (``8/255/2`` is *not* read as 8/(255/2)), empty or signed parts
    (`` /255``, ``1/-255``, ``+-1``), ``8//255``, ``nan``, ``inf``, hex (``0x10``), ``_``
    separators (``1_000``), non-ASCII digits and text longer than 64 characters. A fraction
    is evaluated exactly, then rounded once to a float.

    A leading ``-`` (``-0.1``, ``-8/255``) and numbers given as int/float get the value
    checks: negative values, zero (unless ``allow_zero``), non-finite values and values
    above ``max_value`` (1.0 by default: a radius larger than the whole pixel range is a
    typo; pass ``None`` for L2/Wasserstein radii) are refused, as are zero denominators.
    """
    if isinstance(text, bool):
        raise UserError(f"eps {text!r} is not a number; write e.g. 8/255 or 0.031")
    shown = repr(text)
    if isinstance(text, str):
        value = _parse_text(shown, text)
    elif isinstance(text, numbers.Real):  # int, float, numpy scalars, Fraction
        value = float(text)
    else:
        raise UserError(f"eps {shown[:60]} is a {type(text).__name__}, not a number; {_HOW}")
    if not math.isfinite(value):
        raise UserError(f"eps {shown} is not finite; write e.g. 8/255 or 0.031")
    if value < 0:
        raise UserError(f"eps {shown} is negative; a radius must be >= 0")
    if value == 0 and not allow_zero:
        raise UserError(f"eps {shown} is zero; give a positive radius such as 8/255")
    if max_value is not None and value > max_value:
        raise UserError(
            f"eps {shown} = {value:g} exceeds {max_value:g}; radii are in pixel units of [0,1] images "
            "(did you mean e.g. 8/255 rather than 8?)"
        )
    return value


def format_eps(value: float) -> str:
    """A short, exact-looking label: 8/255 for 0.03137..., else the decimal."""
    frac = Fraction(value).limit_denominator(255)
    if frac.denominator == 255 and abs(float(frac) - value) < 1e-12:
        return f"{frac.numerator}/255"
    return f"{value:g}"
