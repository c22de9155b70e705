"""Parsing of perturbation radii as users type them: ``8/255``, ``0.031``, ``2/255``."""

from __future__ import annotations

import math
from fractions import Fraction

from robustbench_mr.errors import UserError


def parse_eps(text: str | float | int, *, allow_zero: bool = False, max_value: float | None = 1.0) -> float:
    """Return the radius written in ``text`` as a float in pixel units ([0, 1] images).

    Accepts a decimal (``0.031``), a fraction (``8/255``) or a number. Rejects negative
    values, values above ``max_value`` (1.0 by default: a radius larger than the whole
    pixel range is a typo; pass ``None`` for L2/Wasserstein radii), zero denominators and
    anything that is not a number, with a message that says how to write it.
    """
    if isinstance(text, bool):
        raise UserError(f"eps {text!r} is not a number; write e.g. 8/255 or 0.031")
    if isinstance(text, (int, float)):
        value = float(text)
        shown = repr(text)
    else:
        shown = repr(text)
        s = str(text).strip()
        if not s:
            raise UserError("eps is empty; write e.g. 8/255 or 0.031")
        try:
            if "/" in s:
                num, den = s.split("/", 1)
                den_f = Fraction(den.strip())
                if den_f == 0:
                    raise UserError(f"eps {shown} has a zero denominator; write e.g. 8/255")
                value = float(Fraction(num.strip()) / den_f)
            else:
                value = float(Fraction(s))
        except UserError:
            raise
        except (ValueError, ZeroDivisionError):
            raise UserError(f"eps {shown} is not a number; write e.g. 8/255 or 0.031") from None
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
