"""THE feature definitions, with a batch path (Polars) and an online path (plain Python).

Both paths implement the same definitions and are tested against each other. One module
per job:

- ``definitions``: the declared feature set (names, windows, constants) and the scalar
  definitions both paths share. Plain Python.
- ``batch``: the batch path over day ranges of raw transactions (Polars and numpy; the only
  module of the package that imports them).
- ``history``: one customer's recent transactions and the running-totals index that answers
  window queries (the online state). Plain Python.
- ``online``: the online path, one transaction at a time from a customer's history and a
  terminal's snapshot. Plain Python.

This file imports nothing: the serving code imports ``definitions``, ``history`` and
``online`` only, and so never loads Polars.
"""
