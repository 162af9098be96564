"""Monitoring: what the scoring service did and how well, and how far the data drifted.

Pure functions over Polars frames and numpy arrays (no Dagster): the monitoring assets in
``defs/monitoring/`` are thin wrappers around them. One module per job:

- ``logs``: reading the service's prediction, error and feedback logs and the label
  partitions; the latest label per transaction; predictions joined with labels.
- ``serving``: requests, latency percentiles, error rate, per variant.
- ``performance``: live AP, precision and recall at the alert rule, business figures.
- ``ab``: champion-minus-challenger differences with bootstrap intervals.
- ``drift``: bins frozen at training time, PSI against them, the Evidently stattest.

Per-variant tables (serving, business) carry one more row, ``variant == ALL``: all answered
traffic (champion + challenger; shadow rows are extra work the client never sees).
"""

ALL = "all"  # the row of a per-variant table that covers answered traffic (no shadow rows)
