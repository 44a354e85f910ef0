"""Line charts as standalone SVG documents (no plotting library, no fonts or scripts to fetch)."""

import dataclasses
import html
import math
from typing import List, Optional, Sequence

_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 64, 16, 36, 48
_BAND_LABEL_LINE = 16  # added above the plot for the bands' labels
_LEGEND_LINE = 18
_TICKS = 5


@dataclasses.dataclass(frozen=True)
class Series:
    """One line drawn in `color` (a CSS color), dashed or solid.

    Its values are at x = 1, 2, ..., len(values), or at the positions `x` (one per value, increasing:
    e.g. the epochs at which a kNN accuracy was measured).
    """

    label: str
    values: Sequence[float]
    color: str
    dashed: bool = False
    x: Optional[Sequence[float]] = None

    def positions(self) -> List[float]:
        if self.x is None:
            return [float(index + 1) for index in range(len(self.values))]
        if len(self.x) != len(self.values):
            raise ValueError(f"series {self.label!r} has {len(self.values)} values but {len(self.x)} x positions")
        return [float(position) for position in self.x]


@dataclasses.dataclass(frozen=True)
class Band:
    """A labelled stretch of the x axis, first..last (e.g. the epochs of one training phase).

    A chart with bands draws a vertical separator before each band but the first and the band's label
    at the top of the plot.
    """

    label: str
    first: float
    last: float


def line_chart(title: str, series: Sequence[Series], x_label: str, y_label: str,
               width: int = 520, height: int = 300, x_tick_labels: Optional[Sequence[str]] = None,
               bands: Sequence[Band] = ()) -> str:
    """An SVG document plotting every series against its x positions, with axes, ticks and a legend.

    Args:
      title: shown above the plot.
      series: the lines; at least one with at least one value.
      x_label: the x axis' label (e.g. "epoch").
      y_label: the y axis' label.
      width: the plot's width in pixels.
      height: the plot's height in pixels, without the legend below it.
      x_tick_labels: names for the positions 1..n (an evenly spaced category axis, e.g. label
        budgets); by default the ticks are the numbers themselves.
      bands: labelled stretches of the x axis, in order (training phases), separated by vertical lines.

    Returns:
      The SVG markup, with width and height set so that an <img> shows it at that size.

    Raises:
      ValueError: no series has a value.
    """
    values = [value for line in series for value in line.values]
    if not values:
        raise ValueError(f"chart {title!r} has nothing to plot")
    last_x = max([position for line in series for position in line.positions()] + [band.last for band in bands])
    x_ticks = (list(range(1, len(x_tick_labels) + 1)) if x_tick_labels else _integer_ticks(math.ceil(last_x)))
    y_ticks = _nice_ticks(min(values), max(values))
    total_height = height + _LEGEND_LINE * len(series)
    frame = _Frame(x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1], width, height,
                   _MARGIN_TOP + (_BAND_LABEL_LINE if bands else 0))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_height}" '
        f'viewBox="0 0 {width} {total_height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{total_height}" fill="white"/>',
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{_escape(title)}</text>',
        *_axes(frame, x_ticks, y_ticks, x_label, y_label, x_tick_labels),
        *_bands(frame, bands),
        *(_line(frame, line) for line in series),
        *(_legend_entry(index, line, height) for index, line in enumerate(series)),
        "</svg>",
    ]
    return "\n".join(parts)


@dataclasses.dataclass(frozen=True)
class _Frame:
    """Maps data coordinates to pixels inside the plot area."""

    x_min: float
    x_max: float
    y_min: float
    y_max: float
    width: int
    height: int
    margin_top: int = _MARGIN_TOP

    def x(self, value: float) -> float:
        span = self.width - _MARGIN_LEFT - _MARGIN_RIGHT
        return _MARGIN_LEFT + (value - self.x_min) / (self.x_max - self.x_min) * span

    def y(self, value: float) -> float:
        span = self.height - self.margin_top - _MARGIN_BOTTOM
        return self.height - _MARGIN_BOTTOM - (value - self.y_min) / (self.y_max - self.y_min) * span


def _nice_ticks(low: float, high: float) -> List[float]:
    """About _TICKS round values (steps of 1, 2 or 5 x 10^n) covering [low, high]."""
    if high - low < 1e-12:
        padding = abs(low) * 0.1 or 1.0
        low, high = low - padding, high + padding
    raw_step = (high - low) / _TICKS
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(factor * magnitude for factor in (1, 2, 5, 10) if factor * magnitude >= raw_step)
    first = math.floor(low / step)
    last = math.ceil(high / step)
    return [round(index * step, 12) for index in range(first, last + 1)]


def _integer_ticks(count: int) -> List[int]:
    """Epoch ticks 1..count (at least 1..2 so that a single point has an axis), at most about 10."""
    last = max(count, 2)
    step = max(1, math.ceil(last / 10))
    ticks = list(range(1, last + 1, step))
    return ticks if ticks[-1] == last else ticks + [last]


def _axes(frame: _Frame, x_ticks, y_ticks, x_label: str, y_label: str,
          x_tick_labels: Optional[Sequence[str]] = None) -> List[str]:
    left, right = frame.x(frame.x_min), frame.x(frame.x_max)
    top, bottom = frame.y(frame.y_max), frame.y(frame.y_min)
    parts = [f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" stroke="#999"/>']
    for tick in y_ticks:
        y = frame.y(tick)
        parts.append(f'<line x1="{left}" y1="{y}" x2="{right}" y2="{y}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{tick:g}</text>')
    for tick in x_ticks:
        x = frame.x(tick)
        parts.append(f'<line x1="{x}" y1="{bottom}" x2="{x}" y2="{bottom + 4}" stroke="#999"/>')
        name = x_tick_labels[tick - 1] if x_tick_labels else tick
        parts.append(f'<text x="{x}" y="{bottom + 17}" text-anchor="middle">{_escape(str(name))}</text>')
    parts.append(f'<text x="{(left + right) / 2}" y="{bottom + 36}" text-anchor="middle">{_escape(x_label)}</text>')
    middle = (top + bottom) / 2
    parts.append(f'<text x="14" y="{middle}" text-anchor="middle" transform="rotate(-90 14 {middle})">'
                 f'{_escape(y_label)}</text>')
    return parts


def _bands(frame: _Frame, bands: Sequence[Band]) -> List[str]:
    """A dashed vertical line halfway between one band's last x and the next band's first, and each label
    above the plot."""
    top, bottom = frame.y(frame.y_max), frame.y(frame.y_min)
    parts = []
    for index, band in enumerate(bands):
        if index > 0:
            x = frame.x((bands[index - 1].last + band.first) / 2)
            parts.append(f'<line class="band-separator" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" '
                         'stroke="#555" stroke-dasharray="3 3"/>')
        middle = frame.x((band.first + band.last) / 2)
        parts.append(f'<text class="band-label" x="{middle:.1f}" y="{top - 5}" text-anchor="middle" font-size="11" '
                     f'fill="#555">{_escape(band.label)}</text>')
    return parts


def _line(frame: _Frame, line: Series) -> str:
    points = [(frame.x(position), frame.y(value)) for position, value in zip(line.positions(), line.values)]
    dash = ' stroke-dasharray="6 4"' if line.dashed else ""
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    markers = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{line.color}"/>' for x, y in points)
    return f'<polyline points="{path}" fill="none" stroke="{line.color}" stroke-width="2"{dash}/>{markers}'


def _legend_entry(index: int, line: Series, height: int) -> str:
    y = height + index * _LEGEND_LINE + 4
    dash = ' stroke-dasharray="6 4"' if line.dashed else ""
    return (f'<line x1="{_MARGIN_LEFT}" y1="{y}" x2="{_MARGIN_LEFT + 28}" y2="{y}" stroke="{line.color}" '
            f'stroke-width="2"{dash}/><text x="{_MARGIN_LEFT + 36}" y="{y + 4}">{_escape(line.label)}</text>')


def _escape(text: str) -> str:
    return html.escape(text, quote=True)
