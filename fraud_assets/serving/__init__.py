"""Online scoring: the BentoML service and the small modules it is made of.

Never imports Dagster or Polars: the hot path stays lean and the Bento stays small.
"""
