"""Disclosure control on its own: what is suppressed, what follows, what is rounded."""

from __future__ import annotations

from app.services.disclosure import RawTable, control, exact, round_to


def _table(cells: dict[tuple[str, ...], int], dimensions: tuple[str, ...]) -> RawTable:
    margins: dict[str, dict[str, int]] = {d: {} for d in dimensions}
    for key, n in cells.items():
        for i, d in enumerate(dimensions):
            margins[d][key[i]] = margins[d].get(key[i], 0) + n
    return RawTable(dimensions, cells, margins, sum(cells.values()))


class TestControl:
    def test_small_counts_are_suppressed_and_zero_is_not(self) -> None:
        table = _table({("a",): 0, ("b",): 3, ("c",): 12, ("d",): 40}, ("region",))
        released = control(table, threshold=5, rounding_base=5)
        assert released.cells[("a",)].count == 0 and not released.cells[("a",)].suppressed
        assert released.cells[("b",)].suppressed and released.cells[("b",)].count is None

    def test_a_lone_suppressed_cell_takes_the_next_smallest_of_its_line_with_it(self) -> None:
        table = _table({("a",): 3, ("b",): 12, ("c",): 40}, ("region",))
        released = control(table, threshold=5, rounding_base=5)
        assert released.cells[("b",)].suppressed  # else total - 12 - 40 gives the 3
        assert not released.cells[("c",)].suppressed

    def test_every_line_of_a_two_way_table_keeps_two_suppressed_or_none(self) -> None:
        cells = {("a", "f"): 2, ("a", "m"): 20, ("b", "f"): 30, ("b", "m"): 25}
        released = control(_table(cells, ("region", "sex")), threshold=5, rounding_base=5)
        hidden = {k for k, r in released.cells.items() if r.suppressed}
        for position in (0, 1):
            for value in {k[position] for k in cells}:
                line = [k for k in cells if k[position] == value]
                assert len([k for k in line if k in hidden]) != 1, (position, value, hidden)

    def test_margins_are_protected_like_cells(self) -> None:
        table = RawTable(("sex",), {}, {"sex": {"female": 4, "male": 30}}, 34)
        released = control(table, threshold=5, rounding_base=5)
        assert released.margins["sex"]["female"].suppressed and released.margins["sex"]["male"].suppressed

    def test_every_released_count_is_rounded(self) -> None:
        table = _table({("a",): 12, ("b",): 13}, ("region",))
        released = control(table, threshold=5, rounding_base=5)
        assert [released.cells[(k,)].count for k in "ab"] == [10, 15]
        assert released.total.count == 25
        assert released.method == "controlled"

    def test_rounding_never_makes_a_child_disappear(self) -> None:
        assert round_to(1, 5) == 5 and round_to(0, 5) == 0 and round_to(22, 5) == 20 and round_to(23, 5) == 25


class TestExact:
    def test_the_keepers_release_is_untouched(self) -> None:
        table = _table({("a",): 1, ("b",): 13}, ("region",))
        released = exact(table, threshold=5, rounding_base=5)
        assert [released.cells[(k,)].count for k in "ab"] == [1, 13]
        assert released.total.count == 14 and released.method == "exact"
