"""A ratio as a percentage, rounded as people and spreadsheets round, a half away from zero,
and worked out exactly from the ratio's integers (never a float, which can land on either side
of a half): the one rule by which the policy engine says a move, a magnitude or a ceiling and
the console's pages say a share. The standard library only, as the engine is."""


def round_half_away(numerator: int, denominator: int) -> int:
    """numerator / denominator to a whole number, exactly, a half away from zero: 5/2 is 3 and
    -5/2 is -3 (Python's ``round`` takes a half to the even 2; ``Decimal``'s ``ROUND_HALF_UP``
    is this rule). The denominator is positive."""
    quotient, remainder = divmod(abs(numerator), denominator)
    size = quotient + 1 if 2 * remainder >= denominator else quotient
    return -size if numerator < 0 else size


def percent_figure(numerator: int, denominator: int, *, digits: int, signed: bool = False) -> str:
    """numerator / denominator as a percentage to ``digits`` decimals (0: a whole percent), a
    half away from zero, the denominator positive: 1/16 is "6.3%" to one decimal, 1/8 "13%"
    to none. A figure too small to show keeps its direction ("-0.0%"); ``signed`` puts a "+"
    before the others."""
    shift = 10**digits
    units = round_half_away(abs(numerator) * 100 * shift, denominator)
    sign = "-" if numerator < 0 else "+" if signed else ""
    if not digits:
        return f"{sign}{units}%"
    whole, decimals = divmod(units, shift)
    return f"{sign}{whole}.{decimals:0{digits}d}%"
