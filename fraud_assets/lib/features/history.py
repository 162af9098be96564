"""One customer's recent transactions (the online state) and the index that answers its
window queries. Plain Python: the scoring service holds one ``CustomerHistory`` per card."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

from fraud_assets.lib.features.definitions import (
    AMOUNT_SCALE,
    LOOKBACK_DAYS,
    TIE_SLOTS,
    US_PER_DAY,
    amount_units,
    log_amount_units,
)


class CustomerHistory:
    """One customer's last 30 days: parallel lists ordered by key (time, then arrival).

    The lists are the state (what a store saves and a bundle seeds). Only this class writes
    them: build a history empty or with ``from_arrays``, change it with ``add``,
    ``append_latest``, ``remove``, ``prune`` and ``extend``, export it with ``to_arrays``.
    Other code may read ``keys`` (the online path bisects it) but never changes a list.

    ``_win`` is derived from the lists: prefix sums and a max stack that answer window
    queries in O(log n) instead of rescanning 30 days per transaction. ``add``,
    ``append_latest``, ``remove`` and ``prune`` keep it in step; after ``extend`` it is
    rebuilt when next used (a length that no longer matches shows it is stale).
    """

    __slots__ = ("_win", "amounts", "keys", "small", "terminals", "units")

    def __init__(self) -> None:
        self.keys: list[int] = []
        self.amounts: list[float] = []
        self.units: list[int] = []
        self.small: list[int] = []
        self.terminals: list[str] = []  # where each transaction happened
        self._win: _Windows | None = None

    @classmethod
    def from_arrays(
        cls,
        keys: Sequence[int],
        amounts: Sequence[float],
        small: Sequence[int],
        terminals: Sequence[str],
    ) -> CustomerHistory:
        """A history of these entries (copied): keys strictly increasing, one amount, small
        flag and terminal id per key. Raises ValueError otherwise."""
        if not len(keys) == len(amounts) == len(small) == len(terminals):
            raise ValueError("keys, amounts, small and terminals differ in length")
        h = cls()
        h.keys = list(keys)
        if any(a >= b for a, b in zip(h.keys, h.keys[1:], strict=False)):
            raise ValueError("keys are not increasing")
        h.amounts = list(amounts)
        h.units = [amount_units(a) for a in h.amounts]
        h.small = list(small)
        h.terminals = list(terminals)
        return h

    def to_arrays(self) -> tuple[list[int], list[float], list[int], list[str]]:
        """Copies of (keys, amounts, small, terminals): what ``from_arrays`` takes back."""
        return list(self.keys), list(self.amounts), list(self.small), list(self.terminals)

    def extend(self, other: CustomerHistory, since: int) -> int:
        """Append the entries of ``other`` from key ``since`` on (they must come after every
        entry of this history): a seed followed by live traffic. Returns how many."""
        i = bisect.bisect_left(other.keys, since)
        if i == len(other.keys):
            return 0
        if self.keys and self.keys[-1] >= other.keys[i]:
            raise ValueError("extend: the new entries must come after this history's")
        self.keys.extend(other.keys[i:])
        self.amounts.extend(other.amounts[i:])
        self.units.extend(other.units[i:])
        self.small.extend(other.small[i:])
        self.terminals.extend(other.terminals[i:])
        self._win = None  # rebuilt on next use
        return len(other.keys) - i

    def next_key(self, ts_us: int) -> int:
        """Key of a new transaction at ts_us: after every one already seen at that instant."""
        base = ts_us * TIE_SLOTS
        keys = self.keys
        if not keys or keys[-1] < base:  # the usual case: later than everything seen
            return base
        i = bisect.bisect_left(keys, base)
        j = bisect.bisect_left(keys, base + TIE_SLOTS)
        if j - i >= TIE_SLOTS - 1:
            raise ValueError(
                f"more than {TIE_SLOTS - 1} transactions of one customer at {ts_us} us"
            )
        return base + (j - i)

    def add(self, key: int, amount: float, small: int, terminal: str) -> None:
        keys = self.keys
        units = amount_units(amount)
        if not keys or keys[-1] < key:  # appended: the window index follows in O(1)
            win = self._current()
            keys.append(key)
            self.amounts.append(amount)
            self.units.append(units)
            self.small.append(small)
            self.terminals.append(terminal)
            if win is not None:
                win.push(key, amount, units, small)
            return
        i = bisect.bisect_right(keys, key)
        keys.insert(i, key)
        self.amounts.insert(i, amount)
        self.units.insert(i, units)
        self.small.insert(i, small)
        self.terminals.insert(i, terminal)
        self._win = None  # a late arrival: rebuilt on next use

    def append_latest(self, key: int, amount: float, small: int, terminal: str) -> _Windows | None:
        """The scoring hot path's ``add`` then ``prune``, for its common case: an entry later
        than every one held, to a history whose window index is built and in step. Returns
        the (updated) index; None, with nothing changed, when the case does not apply.

        Pruning before the new entry's window queries changes none of their answers: what it
        forgets is at or before the start of the longest window.
        """
        keys, win = self.keys, self._win
        if win is None or len(win.cu) != len(keys) + 1 or (keys and keys[-1] >= key):
            return None
        # add, win.push and prune in line: this runs once per scored transaction, where a
        # Python function call costs about as much as the arithmetic.
        units = round(amount * AMOUNT_SCALE)  # = amount_units(amount)
        logs = log_amount_units(amount)
        amounts, units_, smalls, terminals = self.amounts, self.units, self.small, self.terminals
        keys.append(key)
        amounts.append(amount)
        units_.append(units)
        smalls.append(small)
        terminals.append(terminal)
        cu, cs, cl, cq, mk, mv = win.cu, win.cs, win.cl, win.cq, win.mk, win.mv
        cu.append(cu[-1] + units)
        cs.append(cs[-1] + small)
        cl.append(cl[-1] + logs)
        cq.append(cq[-1] + logs * logs)
        while mv and mv[-1] < amount:
            mk.pop()
            mv.pop()
        mk.append(key)
        mv.append(amount)
        cutoff = key - _LOOKBACK_SPAN
        if keys[0] <= cutoff:
            i = bisect.bisect_right(keys, cutoff)
            del keys[:i], amounts[:i], units_[:i], smalls[:i], terminals[:i]
            del cu[:i], cs[:i], cl[:i], cq[:i]
            j = bisect.bisect_right(mk, cutoff)
            del mk[:j], mv[:j]
        return win

    def remove(self, key: int) -> None:
        i = self.keys.index(key)
        del self.keys[i], self.amounts[i], self.units[i], self.small[i], self.terminals[i]
        self._win = None

    def prune(self, now_us: int) -> None:
        """Forget what no window can reach any more."""
        cutoff = now_us * TIE_SLOTS - _LOOKBACK_SPAN
        keys = self.keys
        if not keys or keys[0] > cutoff:
            return
        win = self._current()
        i = bisect.bisect_right(keys, cutoff)
        del keys[:i], self.amounts[:i], self.units[:i], self.small[:i], self.terminals[:i]
        if win is not None:
            win.drop(i, cutoff)

    def window_max(self, lo: int, hi: int) -> float:
        """max(amounts[lo:hi]): from the max stack when the window ends at the last entry,
        else (a late arrival's window) by a scan."""
        if hi == len(self.keys):
            win = self.windows()
            return win.mv[bisect.bisect_left(win.mk, self.keys[lo])]
        return max(self.amounts[lo:hi])

    def _current(self) -> _Windows | None:
        """The window index if it matches the lists, else None (and forgotten)."""
        win = self._win
        if win is not None and len(win.cu) != len(self.keys) + 1:
            win = self._win = None
        return win

    def windows(self) -> _Windows:
        """The window index, (re)built if needed."""
        win = self._current()
        if win is None:
            win = self._win = _Windows(self)
        return win


class _Windows:
    """Window index of a ``CustomerHistory`` (derived state, never saved; read, never written,
    outside this module).

    - ``cu``/``cs``: prefix sums of units / small flags, ``cu[i]`` = sum of ``units[:i]`` (plus
      whatever was pruned before): a window's sum is a difference of two integers, exact.
    - ``cl``/``cq``: prefix sums of log-amount units and of their squares (the prior normal),
      derived from the amounts.
    - ``mk``/``mv``: keys and amounts of the entries no later entry exceeds (values never
      increase along the stack). The first stack entry at or after position ``lo`` holds the
      max of ``amounts[lo:]`` and is the first entry with that value, the one a left-to-right
      ``max`` returns (it matters only for 0.0 vs -0.0). Valid for windows ending at the last
      entry; a window that ends earlier (a late arrival) is scanned instead.
    """

    __slots__ = ("cl", "cq", "cs", "cu", "mk", "mv")

    def __init__(self, history: CustomerHistory) -> None:
        keys = history.keys
        self.cu = list(itertools.accumulate(history.units, initial=0))
        self.cs = list(itertools.accumulate(history.small, initial=0))
        logs = [log_amount_units(a) for a in history.amounts]
        self.cl = list(itertools.accumulate(logs, initial=0))
        self.cq = list(itertools.accumulate((u * u for u in logs), initial=0))
        mk: list[int] = []
        mv: list[float] = []
        for key, amount in zip(keys, history.amounts, strict=True):
            while mv and mv[-1] < amount:
                mk.pop()
                mv.pop()
            mk.append(key)
            mv.append(amount)
        self.mk, self.mv = mk, mv

    def push(self, key: int, amount: float, units: int, small: int) -> None:
        self.cu.append(self.cu[-1] + units)
        self.cs.append(self.cs[-1] + small)
        logs = log_amount_units(amount)
        self.cl.append(self.cl[-1] + logs)
        self.cq.append(self.cq[-1] + logs * logs)
        mk, mv = self.mk, self.mv
        while mv and mv[-1] < amount:
            mk.pop()
            mv.pop()
        mk.append(key)
        mv.append(amount)

    def drop(self, count: int, cutoff: int) -> None:
        """The first ``count`` entries (keys <= cutoff) were pruned."""
        del self.cu[:count], self.cs[:count], self.cl[:count], self.cq[:count]
        j = bisect.bisect_right(self.mk, cutoff)
        del self.mk[:j], self.mv[:j]


_LOOKBACK_SPAN = LOOKBACK_DAYS * US_PER_DAY * TIE_SLOTS  # prune's reach, in key units
