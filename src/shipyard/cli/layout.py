"""How wide each table column is: identifiers whole, other text wrapped, what cannot fit under its row.

Pure (no Rich, no terminal) so the rules are tested on their own; render.py measures the cells and
draws the result. The rules, in order:

1. A *kept* column (ids, revisions, addresses, tags, names: what people copy into the next command)
   is exactly as wide as its widest cell: never wrapped, never cut.
2. Every other column may wrap at words (a word longer than the column folds onto the next line, so
   nothing is lost), but is never made narrower than WRAP_MIN, or its natural width if that is less:
   short values such as states and times are never broken.
3. If the table still does not fit, its rightmost wrapping columns leave the table and are printed
   under each row instead (`name: value`), until it fits.
4. Only when the kept columns alone are wider than the terminal is the table wider than the terminal:
   its lines are then longer than the width (the terminal folds them), still never cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

GAP = 2             # spaces between two columns
WRAP_MIN = 16       # narrowest a wrapping column is made (unless all its cells are narrower)


@dataclass(frozen=True)
class Layout:
    """Per column its width in the table, or None when it is printed under each row instead."""

    widths: list[int | None]

    @property
    def in_table(self) -> list[int]:
        return [i for i, w in enumerate(self.widths) if w is not None]

    @property
    def below(self) -> list[int]:
        return [i for i, w in enumerate(self.widths) if w is None]

    @property
    def total(self) -> int:
        """Width of the table's lines (gaps included)."""
        shown = [w for w in self.widths if w is not None]
        return sum(shown) + GAP * max(0, len(shown) - 1)


def _floor(natural: int, keep: bool) -> int:
    return natural if keep else min(natural, WRAP_MIN)


def plan_columns(natural: Sequence[int], keep: Sequence[bool], width: int) -> Layout:
    """Widths for columns whose widest cells (header included) are `natural`, in `width` characters."""
    if len(natural) != len(keep):
        raise ValueError("natural and keep must have one entry per column")
    shown = list(range(len(natural)))

    def need(cols: list[int], sizes: Sequence[int]) -> int:
        return sum(sizes[i] for i in cols) + GAP * max(0, len(cols) - 1)

    floors = [_floor(max(1, n), k) for n, k in zip(natural, keep, strict=True)]
    while need(shown, floors) > width:
        movable = [i for i in shown if not keep[i]]
        if not movable or len(shown) == 1:
            break
        shown.remove(movable[-1])        # rule 3: the rightmost wrapping column goes under the row
    widths: list[int | None] = [None] * len(natural)
    for i in shown:
        widths[i] = max(1, natural[i])
    excess = need(shown, [w or 0 for w in widths]) - width
    # Rule 2: take the excess from the widest wrapping columns first, never below their floor.
    while excess > 0:
        wide = [i for i in shown if not keep[i] and (widths[i] or 0) > floors[i]]
        if not wide:
            break
        top = max(widths[i] or 0 for i in wide)
        tops = [i for i in wide if widths[i] == top]
        second = max([widths[i] or 0 for i in wide if widths[i] != top] + [max(floors[i] for i in tops)])
        step = min(excess, (top - second) * len(tops))
        share, extra = divmod(step, len(tops))
        for n, i in enumerate(tops):
            widths[i] = top - share - (1 if n < extra else 0)
        excess -= step
        if step == 0:
            break
    return Layout(widths)
