"""Disclosure control for aggregate counts: suppression, secondary suppression, rounding.

Pure functions over a :class:`RawTable` (exact counts). The controlled release:

1. **primary suppression**: a non-zero count below the threshold (cell, margin or total) is
   withheld; zero is released (it identifies nobody);
2. **secondary suppression**: in every line of the table (the cells that differ in one
   dimension only, whose sum another query can give as a single cell) and in every margin, a
   lone suppressed count would follow from the rest by subtraction, so the smallest other
   non-zero count of that line is withheld too, until no line has exactly one;
3. **rounding**: every released non-zero count, cells and totals alike, is rounded to the
   nearest multiple of the rounding base (halves up). Subtracting released counts of
   overlapping queries (a county minus all but one of its townships) then leaves an interval
   several counts wide, never the suppressed value; rounding margins alone would not do, since
   any margin is a cell of another query.

The exact release is for the agency's own records and is not controlled at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Key = tuple[str, ...]


@dataclass
class RawTable:
    dimensions: tuple[str, ...]
    cells: dict[Key, int]
    margins: dict[str, dict[str, int]]
    total: int


@dataclass(frozen=True, slots=True)
class Released:
    count: int | None
    suppressed: bool


@dataclass
class ReleasedTable:
    dimensions: tuple[str, ...]
    cells: dict[Key, Released]
    margins: dict[str, dict[str, Released]]
    total: Released
    method: str
    threshold: int
    rounding_base: int
    extra: dict[str, object] = field(default_factory=dict)


def exact(table: RawTable, *, threshold: int, rounding_base: int) -> ReleasedTable:
    def keep(n: int) -> Released:
        return Released(n, False)

    return ReleasedTable(
        dimensions=table.dimensions,
        cells={k: keep(v) for k, v in table.cells.items()},
        margins={d: {v: keep(n) for v, n in m.items()} for d, m in table.margins.items()},
        total=keep(table.total),
        method="exact",
        threshold=threshold,
        rounding_base=rounding_base,
    )


def round_to(n: int, base: int) -> int:
    """Nearest multiple of ``base``, halves up; a non-zero count never rounds to zero."""
    if n == 0:
        return 0
    return max(base, base * ((n + base // 2) // base))


def _secondary(values: dict[Key, int], suppressed: set[Key], lines: list[list[Key]]) -> bool:
    """Withhold one more count in each line with a lone suppressed one; True if any changed."""
    changed = False
    for line in lines:
        hidden = [k for k in line if k in suppressed]
        if len(hidden) != 1:
            continue
        candidates = sorted((values[k], k) for k in line if k not in suppressed and values[k] > 0)
        if candidates:
            suppressed.add(candidates[0][1])
            changed = True
    return changed


def _cell_lines(keys: list[Key], width: int) -> list[list[Key]]:
    lines: list[list[Key]] = []
    for position in range(width):
        groups: dict[Key, list[Key]] = {}
        for key in keys:
            groups.setdefault(key[:position] + key[position + 1 :], []).append(key)
        lines.extend(groups.values())
    return lines


def control(table: RawTable, *, threshold: int, rounding_base: int) -> ReleasedTable:
    def small(n: int) -> bool:
        return 0 < n < threshold

    keys = sorted(table.cells)
    suppressed = {k for k in keys if small(table.cells[k])}
    lines = _cell_lines(keys, len(table.dimensions))
    while _secondary(table.cells, suppressed, lines):
        pass

    margins: dict[str, dict[str, Released]] = {}
    for dimension, values in table.margins.items():
        margin_keys: dict[Key, int] = {(v,): n for v, n in values.items()}
        hidden: set[Key] = {k for k, n in margin_keys.items() if small(n)}
        while _secondary(margin_keys, hidden, [sorted(margin_keys)]):
            pass
        margins[dimension] = {
            k[0]: Released(None, True) if k in hidden else Released(round_to(n, rounding_base), False)
            for k, n in margin_keys.items()
        }

    def release(n: int, hidden: bool) -> Released:
        return Released(None, True) if hidden else Released(round_to(n, rounding_base), False)

    return ReleasedTable(
        dimensions=table.dimensions,
        cells={k: release(table.cells[k], k in suppressed) for k in keys},
        margins=margins,
        total=release(table.total, small(table.total)),
        method="controlled",
        threshold=threshold,
        rounding_base=rounding_base,
    )
