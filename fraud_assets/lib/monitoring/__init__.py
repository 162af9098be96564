"""Monitoring: how far the data drifted (``drift``: frozen bins, PSI, the Evidently stattest)."""
