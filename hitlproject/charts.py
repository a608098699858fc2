"""Small charts drawn on the server as SVG: nothing is loaded from a CDN, and the numbers a
person sees are the ones in the page."""

import json
import math
import textwrap
from dataclasses import dataclass
from decimal import Context, Decimal

from hitlproject.validation import may_show_as_another


def as_sent(value: float | int) -> str:
    """A number an agent sent, in the digits it sent: a whole number as its digits, at any
    size (a 38-digit one, not 1e+38); another, the shortest decimal that reads back as the
    same float (what its JSON carried), written out in full, 0.00012 and 1234567.891, not
    rounded to four places (0.0001, which it did not send) nor padded (12500.5000); past
    sixteen digits either side of the point, in Python's exponent notation (1e+300)."""
    if isinstance(value, int) and not isinstance(value, bool):
        # Every digit, unless it is a few digits and zeros: 1e308 sent as a float, which
        # PostgreSQL keeps as the number written and gives back as 1 and 308 zeros, is
        # said 1e+308 again (the same number, as Python writes it).
        shortest = Decimal(value).normalize(Context(prec=len(str(abs(value)))))
        if abs(value) >= 10**16 and len(shortest.as_tuple().digits) <= 17:
            return str(shortest).lower()
        return str(value)
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else repr(value)
    digits = Decimal(repr(float(value)))
    if not -16 <= digits.adjusted() < 16:
        return repr(float(value))
    text = f"{digits:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


# Ten, so that no two series of one chart share a colour (a scorecard's has up to ten).
BAR_PALETTE = [
    "#8aa4b8",
    "#264b5d",
    "#c8553d",
    "#588b8b",
    "#d9a441",
    "#7a5c8e",
    "#6b8f3a",
    "#b5658a",
    "#3d6fb6",
    "#8c6d46",
]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    color: str

    @property
    def center(self) -> float:
        return round(self.x + self.width / 2, 1)


@dataclass(frozen=True)
class GroupedBarChart:
    width: int
    height: int
    baseline: float
    bars: list[Bar]
    groups: list[tuple[float, list[str]]]  # label x position, label in lines that fit
    legend: list[tuple[str, str]]  # series name, color
    # Each category's values, one per series: the chart's figures as text, for a screen
    # reader and for anyone who wants the numbers rather than the bars.
    figures: list[tuple[str, list[int]]]


# A category label's lines are drawn in 12px sans-serif, about this wide a character and this
# far apart; a label wider than its group wraps, so neighbours' labels never run into each other.
LABEL_CHARACTER_WIDTH, LABEL_LINE_HEIGHT = 7, 14


def label_lines(label: str, width: float) -> list[str]:
    """A category's label in lines no wider than its group (a word longer stays whole)."""
    most = max(int(width // LABEL_CHARACTER_WIDTH), 1)
    return textwrap.wrap(label, most, break_long_words=False) or [label]


def grouped_bars(
    categories: list[str],
    series: list[tuple[str, list[int]]],
    *,
    width: int = 520,
    height: int = 220,
) -> GroupedBarChart:
    """Bars for each category, one per series, scaled to the largest value; each category's
    label under its bars, wrapped to its width (the chart grows to hold the lines)."""
    top, bottom, side = 20, 30, 10
    group_width = (width - 2 * side) / max(len(categories), 1)
    labels = [label_lines(category, group_width) for category in categories]
    extra_lines = max((len(lines) for lines in labels), default=1) - 1
    height += extra_lines * LABEL_LINE_HEIGHT
    bottom += extra_lines * LABEL_LINE_HEIGHT
    plot_height = height - top - bottom
    largest = max((v for _, values in series for v in values), default=0) or 1
    bar_width = group_width * 0.7 / max(len(series), 1)
    bars, groups = [], []
    for index, lines in enumerate(labels):
        left = side + index * group_width + group_width * 0.15
        groups.append((left + bar_width * len(series) / 2, lines))
        for number, (_, values) in enumerate(series):
            bar_height = plot_height * values[index] / largest
            bars.append(
                Bar(
                    x=round(left + number * bar_width, 1),
                    y=round(top + plot_height - bar_height, 1),
                    width=round(bar_width - 2, 1),
                    height=round(bar_height, 1),
                    value=values[index],
                    color=BAR_PALETTE[number % len(BAR_PALETTE)],
                )
            )
    return GroupedBarChart(
        width=width,
        height=height,
        baseline=top + plot_height,
        bars=bars,
        groups=[(round(x, 1), lines) for x, lines in groups],
        legend=[
            (name, BAR_PALETTE[number % len(BAR_PALETTE)])
            for number, (name, _) in enumerate(series)
        ],
        figures=[
            (category, [values[index] for _, values in series])
            for index, category in enumerate(categories)
        ],
    )


@dataclass(frozen=True)
class Line:
    label: str
    points: str  # "x,y x,y …" for an SVG polyline
    last: float | int
    color: str
    values: list[float | int]  # the figures drawn, as sent, said as text beside the chart

    @property
    def last_shown(self) -> str:
        return as_sent(self.last)

    @property
    def values_shown(self) -> list[str]:
        return [as_sent(value) for value in self.values]


@dataclass(frozen=True)
class LineChart:
    title: str
    width: int
    height: int
    lines: list[Line]
    low: float | int
    high: float | int
    # Series of the object not drawn: one colour a line, so that its legend tells each apart.
    left_out: int = 0

    @property
    def low_shown(self) -> str:
        return as_sent(self.low)

    @property
    def high_shown(self) -> str:
        return as_sent(self.high)


PALETTE = ["#264b5d", "#c8553d", "#588b8b", "#f28f3b", "#8aa4b8", "#6a4c93"]


def line_chart(
    title: str, series: dict[str, list[float | int]], *, width: int = 360, height: int = 120
) -> LineChart:
    """One line per series, on a shared vertical scale, with the first and last points at the
    chart's edges; the first six series, each in a colour of its own (the rest are counted,
    ``left_out``: 2,500 lines in six colours are read as none). The values are numbers as
    sent, each one a finite float can draw (``chartable``): drawn as floats, said as sent (a
    whole number past a float's digits keeps its own)."""
    left_out = max(len(series) - len(PALETTE), 0)
    series = dict(list(series.items())[: len(PALETTE)])
    values = [v for points in series.values() for v in points]
    low, high = min(values), max(values)  # Python compares whole numbers and floats exactly
    # Halved, so that the span between two finite floats (-1e308 and 1e308) stays finite.
    span = (float(high) / 2 - float(low) / 2) or 1
    pad = 8

    def y(v: float | int) -> float:
        return height - pad - (float(v) / 2 - float(low) / 2) / span * (height - 2 * pad)

    lines = []
    for index, (label, points) in enumerate(series.items()):
        step = (width - 2 * pad) / max(len(points) - 1, 1)
        coordinates = " ".join(f"{pad + i * step:.1f},{y(v):.1f}" for i, v in enumerate(points))
        lines.append(Line(label, coordinates, points[-1], PALETTE[index], points))
    return LineChart(title, width, height, lines, low, high, left_out)


def chartable(value) -> list[float | int] | None:
    """A list of at least two numbers, each one a float can draw, as sent (a whole number
    stays whole: its digits are what the chart's figures say); None for anything else, a
    number too large for a float among them (a 400-digit integer is valid JSON)."""
    if not isinstance(value, list) or len(value) < 2:
        return None
    points = []
    for v in value:
        if not isinstance(v, int | float) or isinstance(v, bool):
            return None
        try:
            drawn = float(v)
        except OverflowError:
            return None
        if not math.isfinite(drawn):
            return None
        points.append(v)
    return points


def series_name(key: str) -> str:
    """A series' name as its chart says it: as sent, unless it could show as another name or
    as nothing (``may_show_as_another``), or opens with a quote as a name written as its
    JSON spelling does, then as its JSON spells it (``""``,
    ``"ctr\\u200b"``, ``"\\u0441tr"``), as the supporting data below the charts shows it.
    Such names captioned charts with nothing ("The figures of "), and three series named
    "ctr", "ctr" with a zero-width space after it and "сtr" with a Cyrillic "с" were three
    charts captioned "ctr". A name kept as sent never opens with a quote, so it never reads
    as another one's JSON spelling (a series named ``""`` took the place of one named "")."""
    return json.dumps(key) if key.startswith('"') or may_show_as_another(key) else key


def numeric_series(data: dict, limit: int = 6) -> list[LineChart]:
    """The series of numbers in an agent's supporting data, as charts: a list of numbers is a
    line; an object whose values are lists of numbers is one chart with a line each. A series
    no chart can draw is left out (the page shows the data itself as well). Each is named as
    ``series_name`` says."""
    charts = []
    for key, value in data.items() if isinstance(data, dict) else ():
        name = series_name(str(key))
        if (points := chartable(value)) is not None:
            charts.append(line_chart(name, {name: points}))
        elif isinstance(value, dict):
            lines = {
                series_name(str(k)): points for k, v in value.items() if (points := chartable(v))
            }
            if lines:
                charts.append(line_chart(name, lines))
        if len(charts) == limit:
            break
    return charts


def numeric_series_count(data: dict) -> int:
    """How many charts ``numeric_series`` would draw with no limit: a page that draws the
    first few says how many more its data holds, rather than leaving them unsaid."""
    if not isinstance(data, dict):
        return 0
    return sum(
        1
        for value in data.values()
        if chartable(value) is not None
        or (isinstance(value, dict) and any(chartable(v) for v in value.values()))
    )
