"""Small charts drawn on the server as SVG: nothing is loaded from a CDN, and the numbers a
person sees are the ones in the page."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    series: int

    @property
    def center(self) -> float:
        return round(self.x + self.width / 2, 1)


@dataclass(frozen=True)
class GroupedBarChart:
    width: int
    height: int
    baseline: float
    bars: list[Bar]
    groups: list[tuple[float, str]]  # label x position, label
    legend: list[str]


def grouped_bars(
    categories: list[str],
    series: list[tuple[str, list[int]]],
    *,
    width: int = 520,
    height: int = 220,
) -> GroupedBarChart:
    """Bars for each category, one per series, scaled to the largest value."""
    top, bottom, side = 20, 30, 10
    plot_height = height - top - bottom
    largest = max((v for _, values in series for v in values), default=0) or 1
    group_width = (width - 2 * side) / max(len(categories), 1)
    bar_width = group_width * 0.7 / max(len(series), 1)
    bars, groups = [], []
    for index, category in enumerate(categories):
        left = side + index * group_width + group_width * 0.15
        groups.append((left + bar_width * len(series) / 2, category))
        for number, (_, values) in enumerate(series):
            bar_height = plot_height * values[index] / largest
            bars.append(
                Bar(
                    x=round(left + number * bar_width, 1),
                    y=round(top + plot_height - bar_height, 1),
                    width=round(bar_width - 2, 1),
                    height=round(bar_height, 1),
                    value=values[index],
                    series=number,
                )
            )
    return GroupedBarChart(
        width=width,
        height=height,
        baseline=top + plot_height,
        bars=bars,
        groups=[(round(x, 1), label) for x, label in groups],
        legend=[name for name, _ in series],
    )
