"""Card-transaction simulator: customers, terminals, daily transactions, fraud and drift.

Every day is generated from its own random streams keyed by (seed, day, purpose), so day D
is identical whether it is generated alone, after other days, or in a parallel backfill,
and never needs the days before it. Scenarios that span days (a compromised terminal stays
compromised for weeks) are re-derived from the small per-day compromise draws of the days
that can still affect D. Everything is vectorised with numpy: no Python loop per
transaction.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Literal

import numpy as np
import polars as pl

from fraud_assets.lib.schema import order_columns

CATEGORIES = (
    "grocery",
    "restaurant",
    "fuel",
    "pharmacy",
    "fashion",
    "electronics",
    "travel",
    "entertainment",
    "digital_goods",
    "transport",
)
# Typical basket size of a category relative to the customer's usual spend.
_CATEGORY_AMOUNT = np.array([1.0, 0.8, 1.3, 0.6, 1.6, 3.0, 4.0, 1.1, 0.5, 0.4])
_PHYSICAL_WEIGHTS = np.array([0.25, 0.2, 0.12, 0.08, 0.1, 0.05, 0.03, 0.07, 0.0, 0.1])
_ONLINE_WEIGHTS = np.array([0.05, 0.05, 0.0, 0.02, 0.25, 0.2, 0.15, 0.1, 0.18, 0.0])
_DIGITAL_GOODS = CATEGORIES.index("digital_goods")

SCENARIOS = (
    "none",
    "large_amount",
    "compromised_terminal",
    "compromised_card",
    "card_testing",
    "new_pattern",
    "account_takeover",
)
_NONE, _LARGE, _TERMINAL, _CARD, _TESTING, _NEW, _TAKEOVER = range(len(SCENARIOS))

# Independent random streams per day, so adding a scenario never shifts another's draws.
_S_DAY, _S_TERMINAL, _S_CARD, _S_TESTING, _S_NEW, _S_LABEL, _S_TAKEOVER = range(1, 8)
# classic: each fraud kind has one tell-tale feature (kept for comparisons with earlier
# figures). realistic (the default): compromised cards spend moderately more at terminals
# new to the card, account takeovers, terminal compromises detected late, customers whose
# spending spread differs more.
DIFFICULTIES = ("classic", "realistic")
_DAY_SECONDS = 86_400


@dataclass(frozen=True)
class DriftScenario:
    """A change in the world from `start` on.

    covariate: amounts scale by `amount_factor` and customers shop online more
    (`online_share_delta` added to each customer's online probability).
    new_fraud_pattern: a fraud pattern never seen before (concept drift): night-time online
    purchases of digital goods at 2-4x the victim's usual amount.
    """

    kind: Literal["covariate", "new_fraud_pattern"]
    start: date
    amount_factor: float = 1.6
    online_share_delta: float = 0.25
    victims_per_customer_day: float = 0.0015

    def active(self, day: date) -> bool:
        return day >= self.start


@dataclass(frozen=True)
class SimulationConfig:
    """Population and scenario knobs. `size` scales customers and terminals together."""

    seed: int = 7
    size: float = 1.0
    difficulty: Literal["classic", "realistic"] = "realistic"
    customers_per_size: int = 4_000
    terminals_per_size: int = 8_000
    online_terminal_share: float = 0.1
    nearby_terminals: int = 12
    online_merchants_per_customer: int = 6
    # Fraud scenarios (rates per entity per day).
    large_amount_rate: float = 0.0008
    terminal_compromise_rate: float = 0.0001
    terminal_compromise_days: int = 28
    card_compromise_rate: float = 0.0006
    card_compromise_days: int = 14
    card_compromise_share: float = 1 / 3
    card_compromise_amount_factor: float = 4.0
    card_testing_rate: float = 0.0004
    # realistic only: compromised-card purchases at x1.5-3 the usual amount, most of them at
    # terminals the card never used; account takeovers (a burst of online purchases at
    # unfamiliar merchants within hours); terminal compromises whose frauds are only
    # reported once the compromise is found, days later; a wider range of spending spreads.
    card_compromise_amount_range: tuple[float, float] = (1.5, 3.0)
    card_compromise_new_terminal_share: float = 0.7
    takeover_rate: float = 0.0002
    takeover_amount_range: tuple[float, float] = (1.5, 5.0)
    terminal_detection_lag_days: tuple[float, float] = (5.0, 20.0)
    customer_sigma_range: tuple[float, float] = (0.15, 1.2)
    # Labels: frauds are confirmed 1-30 days later (most within a week: customers report
    # quickly, chargebacks take longer); genuine ones after a fixed maturity.
    fraud_label_delay_days: tuple[float, float] = (1.0, 30.0)
    fraud_label_delay_mean_days: float = 5.0
    genuine_maturity_days: float = 30.0
    drift: tuple[DriftScenario, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.difficulty not in DIFFICULTIES:
            raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {self.difficulty!r}")

    @property
    def realistic(self) -> bool:
        return self.difficulty == "realistic"

    @property
    def n_customers(self) -> int:
        return max(10, round(self.customers_per_size * self.size))

    @property
    def n_terminals(self) -> int:
        return max(20, round(self.terminals_per_size * self.size))

    @property
    def max_label_delay_days(self) -> int:
        """Days after which every label of a day is known (bounds the label lookback)."""
        return int(np.ceil(max(self.fraud_label_delay_days[1], self.genuine_maturity_days))) + 1

    @classmethod
    def from_dict(cls, raw: dict) -> SimulationConfig:
        raw = dict(raw)
        drift = tuple(
            DriftScenario(**{**d, "start": date.fromisoformat(str(d["start"]))})
            for d in raw.pop("drift", ()) or ()
        )
        for key in (
            "fraud_label_delay_days",
            "card_compromise_amount_range",
            "takeover_amount_range",
            "terminal_detection_lag_days",
            "customer_sigma_range",
        ):
            if key in raw:
                raw[key] = tuple(raw[key])
        return cls(**raw, drift=drift)

    @staticmethod
    def parse_drift(text: str | None) -> tuple[DriftScenario, ...]:
        """Drift scenarios from JSON, e.g. '[{"kind": "covariate", "start": "2026-03-01"}]'."""
        if not text:
            return ()
        return SimulationConfig.from_dict({"drift": json.loads(text)}).drift


@dataclass(frozen=True)
class Population:
    """Customers and terminals: fixed by (seed, size), shared by every day."""

    customer_median: np.ndarray  # usual amount
    customer_sigma: np.ndarray  # spread of log-amounts
    customer_rate: np.ndarray  # transactions per day
    customer_online: np.ndarray  # probability a purchase is online
    customer_nearby: np.ndarray  # (n_customers, k) physical terminals near home
    customer_online_merchants: np.ndarray  # (n_customers, m) favourite online terminals
    terminal_category: np.ndarray
    terminal_online: np.ndarray
    online_terminals: np.ndarray
    digital_goods_terminals: np.ndarray


@functools.lru_cache(maxsize=4)
def build_population(config: SimulationConfig) -> Population:
    from scipy.spatial import cKDTree  # only needed once per population

    rng = np.random.default_rng([config.seed, 0])
    n_c, n_t = config.n_customers, config.n_terminals
    customer_xy = rng.uniform(0, 100, (n_c, 2))
    terminal_xy = rng.uniform(0, 100, (n_t, 2))
    terminal_online = rng.random(n_t) < config.online_terminal_share
    terminal_online[:2] = [True, False]  # both kinds always exist, even in tiny populations
    category = np.where(
        terminal_online,
        rng.choice(len(CATEGORIES), n_t, p=_ONLINE_WEIGHTS / _ONLINE_WEIGHTS.sum()),
        rng.choice(len(CATEGORIES), n_t, p=_PHYSICAL_WEIGHTS / _PHYSICAL_WEIGHTS.sum()),
    )
    physical = np.flatnonzero(~terminal_online)
    online = np.flatnonzero(terminal_online)
    k = min(config.nearby_terminals, len(physical))
    _, nearest = cKDTree(terminal_xy[physical]).query(customer_xy, k=k)
    nearby = physical[np.asarray(nearest).reshape(n_c, k)]
    favourites = rng.choice(online, (n_c, config.online_merchants_per_customer))
    digital = online[category[online] == _DIGITAL_GOODS]
    return Population(
        customer_median=rng.uniform(10, 80, n_c),
        customer_sigma=rng.uniform(
            *(config.customer_sigma_range if config.realistic else (0.3, 0.9)), n_c
        ),
        customer_rate=rng.uniform(0.2, 4.0, n_c),
        customer_online=rng.beta(2, 8, n_c),
        customer_nearby=nearby,
        customer_online_merchants=favourites,
        terminal_category=category,
        terminal_online=terminal_online,
        online_terminals=online,
        digital_goods_terminals=digital if len(digital) else online,
    )


def _rng(config: SimulationConfig, ordinal: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, ordinal, stream])


def _compromised(
    config: SimulationConfig, ordinal: int, stream: int, n: int, rate: float, days: int
) -> np.ndarray:
    """Entities compromised on one of the `days` days before `ordinal` (still active on it)."""
    hits = []
    for d in range(ordinal - days, ordinal):
        rng = _rng(config, d, stream)
        k = min(n, rng.poisson(rate * n))
        hits.append(rng.choice(n, k, replace=False))
    return np.unique(np.concatenate(hits)) if hits else np.empty(0, dtype=np.int64)


@dataclass
class _Rows:
    """Column arrays of one day's transactions, before they become a frame."""

    customer: np.ndarray
    terminal: np.ndarray
    seconds: np.ndarray
    amount: np.ndarray
    scenario: np.ndarray

    def extend(self, other: _Rows) -> _Rows:
        return _Rows(
            *(np.concatenate([a, b]) for a, b in zip(self.astuple(), other.astuple(), strict=True))
        )

    def astuple(self) -> tuple[np.ndarray, ...]:
        return (self.customer, self.terminal, self.seconds, self.amount, self.scenario)


def _legit_rows(config: SimulationConfig, pop: Population, day: date) -> _Rows:
    rng = _rng(config, day.toordinal(), _S_DAY)
    weekly = (1.0, 0.95, 0.95, 1.0, 1.1, 1.2, 0.9)[day.weekday()]
    counts = rng.poisson(pop.customer_rate * weekly)
    customer = np.repeat(np.arange(len(counts)), counts)
    n = len(customer)
    online_p = pop.customer_online[customer]
    amount_factor = 1.0
    for drift in config.drift:
        if drift.kind == "covariate" and drift.active(day):
            online_p = np.clip(online_p + drift.online_share_delta, 0, 1)
            amount_factor *= drift.amount_factor
    is_online = rng.random(n) < online_p
    nearby = pop.customer_nearby[customer, rng.integers(0, pop.customer_nearby.shape[1], n)]
    favourite = pop.customer_online_merchants[
        customer, rng.integers(0, pop.customer_online_merchants.shape[1], n)
    ]
    terminal = np.where(is_online, favourite, nearby)
    # Daytime peak around 13:30 plus a flat share that covers evenings and nights.
    daytime = rng.normal(13.5 * 3600, 3.5 * 3600, n)
    flat = rng.uniform(0, _DAY_SECONDS, n)
    seconds = np.where(rng.random(n) < 0.85, daytime, flat)
    seconds = np.clip(seconds, 0, _DAY_SECONDS - 1).astype(np.int64)
    log_spread = pop.customer_sigma[customer] * rng.standard_normal(n)
    amount = (
        pop.customer_median[customer]
        * _CATEGORY_AMOUNT[pop.terminal_category[terminal]]
        * np.exp(log_spread)
        * amount_factor
    )
    return _Rows(customer, terminal, seconds, amount, np.zeros(n, dtype=np.int8))


def _apply_fraud(config: SimulationConfig, pop: Population, day: date, rows: _Rows) -> None:
    """Mark (and reshape) legitimate rows hit by multi-day and large-amount scenarios."""
    o = day.toordinal()
    n_c, n_t = len(pop.customer_rate), len(pop.terminal_category)
    rng = _rng(config, o, _S_CARD)
    terminals = _compromised(
        config,
        o,
        _S_TERMINAL,
        n_t,
        config.terminal_compromise_rate,
        config.terminal_compromise_days,
    )
    hit = np.isin(rows.terminal, terminals)
    rows.scenario[hit] = _TERMINAL

    cards = _compromised(
        config, o, _S_CARD, n_c, config.card_compromise_rate, config.card_compromise_days
    )
    hit = (
        np.isin(rows.customer, cards)
        & (rng.random(len(rows.customer)) < config.card_compromise_share)
        & (rows.scenario == _NONE)
    )
    rows.scenario[hit] = _CARD
    if config.realistic:
        n_hit = int(hit.sum())
        rows.amount[hit] *= rng.uniform(*config.card_compromise_amount_range, n_hit)
        # The fraudster shops where the card never did: any terminal, in person or online.
        moved = np.flatnonzero(hit)[rng.random(n_hit) < config.card_compromise_new_terminal_share]
        rows.terminal[moved] = rng.integers(0, n_t, len(moved))
    else:
        rows.amount[hit] *= config.card_compromise_amount_factor

    hit = (rng.random(len(rows.customer)) < config.large_amount_rate) & (rows.scenario == _NONE)
    rows.scenario[hit] = _LARGE
    rows.amount[hit] = rng.uniform(400, 2_500, hit.sum())


def _card_testing_rows(config: SimulationConfig, pop: Population, day: date) -> _Rows:
    """A burst of tiny online amounts on a stolen card, then one large purchase."""
    rng = _rng(config, day.toordinal(), _S_TESTING)
    n_c = len(pop.customer_rate)
    victims = rng.choice(n_c, min(n_c, rng.poisson(config.card_testing_rate * n_c)), replace=False)
    tests = rng.integers(3, 9, len(victims))
    per_victim = tests + 1  # the tests, then the cash-out
    customer = np.repeat(victims, per_victim)
    start = np.repeat(rng.uniform(0, _DAY_SECONDS - 3 * 3600, len(victims)), per_victim)
    first = np.cumsum(per_victim) - per_victim
    last = first + per_victim - 1
    gaps = rng.uniform(20, 120, len(customer))
    gaps[last] = rng.uniform(300, 3_600, len(victims))
    cum = np.cumsum(gaps)
    offset = cum - np.repeat(cum[first] - gaps[first], per_victim)  # restart at each victim
    seconds = np.minimum(start + offset, _DAY_SECONDS - 1).astype(np.int64)
    amount = rng.uniform(0.5, 3.0, len(customer))
    amount[last] = rng.uniform(200, 1_500, len(victims))
    terminal = pop.online_terminals[rng.integers(0, len(pop.online_terminals), len(customer))]
    return _Rows(customer, terminal, seconds, amount, np.full(len(customer), _TESTING, np.int8))


def _new_pattern_rows(config: SimulationConfig, pop: Population, day: date) -> _Rows:
    """Concept drift: a pattern the model never saw (night-time digital goods, 2-4x usual)."""
    scenarios = [d for d in config.drift if d.kind == "new_fraud_pattern" and d.active(day)]
    empty = _Rows(*(np.empty(0, dtype=t) for t in (np.int64, np.int64, np.int64, float, np.int8)))
    if not scenarios:
        return empty
    rng = _rng(config, day.toordinal(), _S_NEW)
    n_c = len(pop.customer_rate)
    rate = sum(d.victims_per_customer_day for d in scenarios)
    victims = rng.choice(n_c, min(n_c, rng.poisson(rate * n_c)), replace=False)
    customer = np.repeat(victims, rng.integers(1, 4, len(victims)))
    n = len(customer)
    seconds = rng.uniform(0, 5 * 3600, n).astype(np.int64)
    amount = pop.customer_median[customer] * rng.uniform(2, 4, n)
    pool = pop.digital_goods_terminals
    terminal = pool[rng.integers(0, len(pool), n)]
    return _Rows(customer, terminal, seconds, amount, np.full(n, _NEW, np.int8))


def _takeover_rows(config: SimulationConfig, pop: Population, day: date) -> _Rows:
    """Account takeover (realistic only): a burst of 2-6 online purchases within a few hours
    at merchants the customer never used, at 1.5-5x their usual amount."""
    empty = _Rows(*(np.empty(0, dtype=t) for t in (np.int64, np.int64, np.int64, float, np.int8)))
    if not config.realistic:
        return empty
    rng = _rng(config, day.toordinal(), _S_TAKEOVER)
    n_c = len(pop.customer_rate)
    victims = rng.choice(n_c, min(n_c, rng.poisson(config.takeover_rate * n_c)), replace=False)
    per_victim = rng.integers(2, 7, len(victims))
    customer = np.repeat(victims, per_victim)
    n = len(customer)
    start = np.repeat(rng.uniform(0, _DAY_SECONDS - 4 * 3600, len(victims)), per_victim)
    seconds = np.minimum(start + rng.uniform(0, 3 * 3600, n), _DAY_SECONDS - 1).astype(np.int64)
    amount = pop.customer_median[customer] * rng.uniform(*config.takeover_amount_range, n)
    terminal = pop.online_terminals[rng.integers(0, len(pop.online_terminals), n)]
    return _Rows(customer, terminal, seconds, amount, np.full(n, _TAKEOVER, np.int8))


class Simulator:
    """Deterministic, partition-addressable transaction source."""

    name = "simulator"

    def __init__(self, config: SimulationConfig | None = None) -> None:
        self.config = config or SimulationConfig()

    @functools.cached_property
    def population(self) -> Population:
        return build_population(self.config)

    def day_with_label_times(self, day: date) -> pl.DataFrame:
        """One day's transactions plus `known_at`, the moment each label becomes known."""
        return _simulate_day(self.config, day)

    def transactions(self, day: date) -> pl.DataFrame:
        return self.day_with_label_times(day).drop("known_at")

    def labels(self, day: date) -> pl.DataFrame:
        """Label events that became known during `day` (from the days that can reach it)."""
        lo = datetime(day.year, day.month, day.day, tzinfo=UTC)
        hi = lo + timedelta(days=1)
        frames = [
            self.day_with_label_times(day - timedelta(days=back))
            .filter(pl.col("known_at").is_between(lo, hi, closed="left"))
            .select("transaction_id", "is_fraud", "known_at")
            for back in range(1, self.config.max_label_delay_days + 1)
        ]
        return pl.concat(frames).sort("known_at", "transaction_id")

    def days(self, start: date, end: date) -> Iterable[pl.DataFrame]:
        for i in range((end - start).days + 1):
            yield self.transactions(start + timedelta(days=i))

    def with_drift(self, *drift: DriftScenario) -> Simulator:
        return Simulator(replace(self.config, drift=tuple(drift)))


@functools.lru_cache(maxsize=48)
def _simulate_day(config: SimulationConfig, day: date) -> pl.DataFrame:
    pop = build_population(config)
    rows = _legit_rows(config, pop, day)
    _apply_fraud(config, pop, day, rows)
    rows = (
        rows.extend(_card_testing_rows(config, pop, day))
        .extend(_new_pattern_rows(config, pop, day))
        .extend(_takeover_rows(config, pop, day))
    )
    # Deterministic order: time, then customer, then terminal; ids follow that order.
    order = np.lexsort((rows.terminal, rows.customer, rows.seconds))
    customer, terminal, seconds, amount, scenario = (a[order] for a in rows.astuple())
    n = len(customer)
    is_fraud = (scenario != _NONE).astype(np.int8)
    label_rng = _rng(config, day.toordinal(), _S_LABEL)
    lo, hi = config.fraud_label_delay_days
    fraud_delay = lo + label_rng.exponential(config.fraud_label_delay_mean_days - lo, n)
    if config.realistic:  # a compromised terminal's frauds surface once it is found
        lag = label_rng.uniform(*config.terminal_detection_lag_days, n)
        fraud_delay = np.where(scenario == _TERMINAL, fraud_delay + lag, fraud_delay)
    delay_s = np.where(
        is_fraud == 1,
        np.clip(fraud_delay, lo, hi) * _DAY_SECONDS,
        config.genuine_maturity_days * _DAY_SECONDS,
    ).astype(np.int64)
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    ts_us = pl.Series("s", seconds * 1_000_000, dtype=pl.Int64)
    df = pl.DataFrame(
        {
            "row": np.arange(n, dtype=np.int64),
            "seconds_us": ts_us,
            "customer": customer,
            "terminal": terminal,
            "amount": np.round(amount, 2),
            "category": pop.terminal_category[terminal].astype(np.int8),
            "online": pop.terminal_online[terminal],
            "is_fraud": is_fraud,
            "scenario": scenario,
            "delay_us": delay_s * 1_000_000,
        }
    )
    ts = pl.lit(midnight).dt.cast_time_unit("us") + pl.duration(microseconds=pl.col("seconds_us"))
    out = df.select(
        transaction_id=pl.format(
            "{}-{}", pl.lit(day.strftime("%Y%m%d")), pl.col("row").cast(pl.String).str.zfill(8)
        ),
        ts=ts,
        customer_id=pl.format("C{}", pl.col("customer")),
        terminal_id=pl.format("T{}", pl.col("terminal")),
        amount=pl.col("amount").cast(pl.Float64),
        merchant_category=pl.col("category").replace_strict(
            list(range(len(CATEGORIES))), list(CATEGORIES), return_dtype=pl.String
        ),
        channel=pl.when(pl.col("online")).then(pl.lit("online")).otherwise(pl.lit("card_present")),
        is_fraud=pl.col("is_fraud"),
        fraud_scenario=pl.col("scenario").replace_strict(
            list(range(len(SCENARIOS))), list(SCENARIOS), return_dtype=pl.String
        ),
        known_at=ts + pl.duration(microseconds=pl.col("delay_us")),
    )
    return order_columns(out)
