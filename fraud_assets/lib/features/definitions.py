"""The declared feature set: names, windows and the scalar definitions both paths share.

Definitions, for a transaction at time t on day D (UTC):
- time: hour of day, weekend, night (by default 22:00-06:00, ``FRAUD_NIGHT_HOURS``).
- customer windows over 1, 7 and 30 days *up to and including* the transaction: count, mean
  and max amount; the amount relative to the 30-day mean; a 1-hour velocity (count, and
  count of small online amounts, the signature of card testing; "small" is below
  ``FRAUD_SMALL_AMOUNT``, 5 by default, in the data's currency). Transactions at the same
  instant are ordered by transaction_id, and a transaction never sees those after it.
- the customer's own normal, from the 30 days *before* the transaction (it is not part of
  what it is compared with): the z-score of log(1 + amount) against the mean and spread of
  the earlier log amounts (0 with fewer than two; the spread has a floor, so a customer
  whose amounts never varied does not make every change infinite), and the seconds since
  the previous transaction (the window's length when there is none), and how often the
  customer used this terminal before in the window (0: a terminal new to the card), and
  how many distinct terminals it used in the window (this transaction's included).
- terminal risk over 1, 7 and 30 days, in two forms (labels arrive late):
  - known so far: the terminal's transactions on days D-w .. D-1 and how many of them were
    *known* to be fraud by the end of day D-1;
  - mature (the literature's form): the same over days D-m-w .. D-m-1, shifted back by a
    label-maturity delay of m days (a parameter, ``maturity_days``), so that most of the
    window's labels have arrived; still only labels known by the end of D-1 count.
  Known-ness at day granularity means one daily snapshot per terminal serves a whole day
  exactly, online and in batch.
- the terminal's mean amount over days D-30 .. D-1 (in its daily snapshot) and the
  transaction's amount relative to it.
- merchant category and channel as CatBoost categoricals, when the source has them.

Plain Python (no Polars, no numpy): the online path and the scoring service import it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from fraud_assets.lib.contracts import NIGHT_HOURS_ENV, SMALL_AMOUNT_ENV

FEATURE_CODE_VERSION = "features-v3"  # bump when a definition changes (also hashed in MLflow)
WINDOWS_DAYS = (1, 7, 30)
VELOCITY_SECONDS = 3_600


def parse_night_hours(raw: str) -> tuple[int, int]:
    """ "22-6" -> (22, 6): night from the first hour (included) to the second (excluded)."""
    try:
        start, end = (int(part) for part in raw.split("-"))
    except ValueError:
        raise ValueError(f"{NIGHT_HOURS_ENV} must look like 22-6, got {raw!r}") from None
    if not (0 <= start < 24 and 0 <= end < 24) or start == end:
        raise ValueError(f"{NIGHT_HOURS_ENV}: two different hours in 0..23, got {raw!r}")
    return start, end


def parse_small_amount(raw: str) -> float:
    value = float(raw)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{SMALL_AMOUNT_ENV} must be a positive amount, got {raw!r}")
    return value


# Conventions of a deployment, not facts of one data set (the currency, the local night):
# read once, here, so the batch path, the online path and the service agree. The bundle
# records them and the service refuses a bundle built with others.
SMALL_AMOUNT = parse_small_amount(os.environ.get(SMALL_AMOUNT_ENV, "").strip() or "5")
NIGHT_START_HOUR, NIGHT_END_HOUR = parse_night_hours(
    os.environ.get(NIGHT_HOURS_ENV, "").strip() or "22-6"
)
NIGHT_HOURS = frozenset(
    h
    for h in range(24)
    if (NIGHT_START_HOUR <= h < NIGHT_END_HOUR)
    or (NIGHT_START_HOUR > NIGHT_END_HOUR and (h >= NIGHT_START_HOUR or h < NIGHT_END_HOUR))
)
FEATURE_PARAMETERS = {
    "small_amount": SMALL_AMOUNT,
    "night_hours": [NIGHT_START_HOUR, NIGHT_END_HOUR],
}
CATEGORICAL_COLUMNS = ("merchant_category", "channel")
UNKNOWN_CATEGORY = "unknown"
# The keys each feature row carries besides its features.
FEATURE_ROW_KEYS = ("transaction_id", "ts", "customer_id", "terminal_id")

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
# Keys order transactions of one customer: time in microseconds, then arrival rank among
# transactions at the same microsecond (so ties never see each other out of order).
TIE_SLOTS = 1_024
LOOKBACK_DAYS = max(WINDOWS_DAYS)  # how far back the longest customer window reaches
# The usual delay after which most fraud labels are known (chargebacks, investigations): the
# default shift of the mature terminal windows. Deployments set their own (settings).
DEFAULT_MATURITY_DAYS = 7
# Window sums run on integer amount units (1e-4 of a currency unit): integer sums are exact,
# so a mean does not depend on how much history a computation happened to start from, and
# the batch and online paths agree bit for bit.
AMOUNT_SCALE = 10_000
# log(1 + amount) in integer units of 1e-4 for the customer's spread: exact integer sums of
# units and squared units, so both paths agree whatever history they started from. The
# spread's floor in log units: 0.1 is a ~10% change of amount.
LOG_AMOUNT_SCALE = 10_000
MIN_LOG_SPREAD = 0.1

TIME_FEATURES = ["hour", "is_weekend", "is_night"]
# Drift monitoring skips calendar features: a Saturday is all weekend by design, not drift.
DRIFT_FEATURES_EXCLUDED = tuple(TIME_FEATURES)
CUSTOMER_FEATURES = [
    f"customer_{stat}_{w}d"
    for w in WINDOWS_DAYS
    for stat in ("tx_count", "amount_mean", "amount_max")
] + [
    "amount_to_customer_mean_30d",
    "customer_tx_count_1h",
    "customer_small_online_count_1h",
    "amount_zscore_to_customer_prior_30d",
    "customer_seconds_since_previous",
    CUSTOMER_TERMINAL_VISITS := "customer_terminal_tx_count_30d",  # 0: a terminal new to it
    CUSTOMER_DISTINCT_TERMINALS := "customer_distinct_terminals_30d",  # this one included
]
TERMINAL_COUNT_COLUMNS = [
    f"terminal_{stat}_{w}d" for w in WINDOWS_DAYS for stat in ("tx_count", "fraud_count")
]
MATURE = "_mature"  # suffix of the mature (delay-shifted) terminal windows
# Known so far over one day cannot hold a known fraud unless labels arrive the same day
# (they rarely do): that window keeps its transaction count only.
_DEAD_KNOWN_SO_FAR = ("terminal_fraud_count_1d", "terminal_risk_1d")
TERMINAL_FEATURES = [
    *(c for c in TERMINAL_COUNT_COLUMNS if c not in _DEAD_KNOWN_SO_FAR),
    *(
        f"terminal_risk_{w}d"
        for w in WINDOWS_DAYS
        if f"terminal_risk_{w}d" not in _DEAD_KNOWN_SO_FAR
    ),
    *(f"{c}{MATURE}" for c in TERMINAL_COUNT_COLUMNS),
    *(f"terminal_risk_{w}d{MATURE}" for w in WINDOWS_DAYS),
    "terminal_amount_mean_30d",  # the terminal's typical amount, days D-30 .. D-1
]
TERMINAL_AMOUNT_MEAN = TERMINAL_FEATURES.index("terminal_amount_mean_30d")
# The transaction against its terminal's typical amount: 1.0 for a terminal without history.
CROSS_FEATURES = ["amount_to_terminal_mean_30d"]
NUMERIC_FEATURES = [
    "amount",
    *TIME_FEATURES,
    *CUSTOMER_FEATURES,
    *TERMINAL_FEATURES,
    *CROSS_FEATURES,
]


def terminal_lookback_days(maturity_days: int) -> int:
    """How many days before D the terminal windows reach (the mature ones reach furthest)."""
    if maturity_days < 0:
        raise ValueError(f"maturity_days must be >= 0, got {maturity_days}")
    return LOOKBACK_DAYS + maturity_days


def feature_columns(categoricals: Sequence[str]) -> list[str]:
    """The model's input vector: numeric features, then the categoricals the source has."""
    return [*NUMERIC_FEATURES, *(c for c in CATEGORICAL_COLUMNS if c in categoricals)]


def available_categoricals(columns: Sequence[str]) -> list[str]:
    return [c for c in CATEGORICAL_COLUMNS if c in columns]


# ---------------------------------------------------------------- shared scalar definitions


def is_night(hour: int) -> int:
    return int(hour in NIGHT_HOURS)


def is_small_online(amount: float, channel: str | None, has_channel: bool) -> int:
    """Card-testing probes: tiny amounts, online when the source knows the channel."""
    return int(amount < SMALL_AMOUNT and (not has_channel or channel == "online"))


def amount_to_mean(amount: float, mean: float) -> float:
    return amount / mean if mean > 0 else 1.0


def amount_units(amount: float) -> int:
    """Integer amount units; Python's round() is half-to-even, as is the batch path's."""
    return round(amount * AMOUNT_SCALE)


def log_amount_units(amount: float) -> int:
    """log(1 + amount) in integer units (math.log1p in both paths: numpy's may differ in the
    last bit)."""
    return round(math.log1p(amount) * LOG_AMOUNT_SCALE)


_MIN_SPREAD_UNITS = MIN_LOG_SPREAD * LOG_AMOUNT_SCALE
NO_PREVIOUS_SECONDS = float(LOOKBACK_DAYS * 86_400)  # no transaction in the longest window


def prior_zscore(own_units: int, n: int, sum_units: int, sum_squares: int) -> float:
    """z of a log amount (``own_units``) against ``n`` earlier ones given their sum and sum
    of squares (integers): both paths call this, or its vectorised twin in ``batch``."""
    if n < 2:
        return 0.0
    mean = sum_units / n
    var = sum_squares / n - mean * mean
    spread = math.sqrt(var) if var > 0 else 0.0
    return (own_units - mean) / max(spread, _MIN_SPREAD_UNITS)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ts_to_us(ts: datetime) -> int:
    """Epoch microseconds of an aware datetime (naive ones are taken as UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    delta = ts - EPOCH
    return (delta.days * 86_400 + delta.seconds) * US_PER_SECOND + delta.microseconds


def time_features(ts_us: int) -> tuple[float, float, float]:
    """hour, is_weekend, is_night (TIME_FEATURES) of an instant in epoch microseconds (UTC).

    Integer arithmetic instead of a datetime: 1970-01-01 was a Thursday (weekday 3).
    """
    hour = ts_us // (3_600 * US_PER_SECOND) % 24
    weekday = (ts_us // US_PER_DAY + 3) % 7
    return float(hour), float(weekday >= 5), float(is_night(hour))


def terminal_values(snapshot: Mapping[str, float] | None) -> tuple[float, ...]:
    """TERMINAL_FEATURES of a terminal's snapshot, in order (zeros for an unknown terminal)."""
    snap = snapshot or {}
    return tuple(float(snap.get(name, 0.0)) for name in TERMINAL_FEATURES)
