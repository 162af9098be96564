"""Online feature state: what the scoring service reads and updates per transaction.

One interface, two implementations (Dagster's project_ml shape: a local and a shared one),
chosen by ``FRAUD_ONLINE_STORE`` (``open_store``):

- ``EmbeddedStore`` (default, unset or ``embedded``): in-process dicts, seeded from a
  bundle's npz files and updated in place. Exact only when ONE process scores all traffic,
  so the service refuses more than one worker with it.
- ``RedisStore`` (``redis://host:port/db``): histories, terminal snapshots and the record of
  every applied transaction id in Redis, shared by any number of workers and replicas.

Both apply transactions through the same Python feature code (``features.online_vectors``):
the store only decides where the histories come from and how the update is made atomic. In
process that is a lock; in Redis it is optimistic concurrency in two round trips: one MGET
reads the histories (each prefixed by a random version token) and the ids' records, Python
computes, and one Lua compare-and-set writes the new histories and records only if every
token read is still there and no record appeared meanwhile, else it retries. Two workers
scoring one card at once thus apply its transactions one after the other, never losing one.
The script only compares and writes: no feature logic is duplicated in Lua.

``apply`` runs a caller's ``check`` on the very state it is about to change, before changing
it: a refused request changes nothing.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import msgspec

from fraud_assets.lib.bundle import read_store_seed
from fraud_assets.lib.contracts import LOGGED_TRANSACTION_FIELDS, ONLINE_STORE_ENV
from fraud_assets.lib.features.definitions import (
    LOOKBACK_DAYS,
    TIE_SLOTS,
    US_PER_DAY,
    terminal_values,
)
from fraud_assets.lib.features.history import CustomerHistory
from fraud_assets.lib.features.online import online_vectors
from fraud_assets.lib.store_seed import StoreSeed, store_day_key

# A card idle this long (in the data's time) has nothing any window can still reach.
IDLE_DAYS = LOOKBACK_DAYS + 1
_IDLE_SPAN = IDLE_DAYS * US_PER_DAY * TIE_SLOTS  # in history-key units
# The embedded store sweeps idle cards after this many new ones (and at every reseed).
EVICT_EVERY = 50_000
_UNKNOWN_TERMINAL = terminal_values(None)

Peek = Callable[[str], CustomerHistory | None]
Recorded = Callable[[str], tuple[Any, ...] | None]
# check(txs, peek, recorded): raise to refuse the request; called before any change.
Check = Callable[[Sequence[Mapping[str, Any]], Peek, Recorded], None]


class StoreBusy(RuntimeError):
    """A shared store kept conflicting (the same cards updated elsewhere every time)."""


def request_fields(tx: Mapping[str, Any]) -> tuple[Any, ...]:
    """The fields a transaction id stands for, as the store records them (JSON types)."""
    values = [tx[name] for name in LOGGED_TRANSACTION_FIELDS]
    ts = values[1]
    if isinstance(ts, datetime):
        values[1] = ts.astimezone(UTC).isoformat()
    return tuple(values)


@runtime_checkable
class OnlineStore(Protocol):
    """Per-customer histories and per-terminal snapshots for the online feature path."""

    backend: str
    shared: bool  # True when several processes may score on it at once
    as_of: date | None  # the day the terminal snapshots (and the seed) are for

    def apply(
        self, txs: Sequence[Mapping[str, Any]], categoricals: Sequence[str], check: Check
    ) -> tuple[list[tuple[Any, ...] | None], dict[str, tuple[Any, ...]]]:
        """Apply transactions in order, atomically; their feature vectors (one per row).

        ``check`` runs first on the state the rows will change. A shared store may find a
        row's id applied by another process already: that row is not applied again, its
        vector is None and ``(recorded request fields, vector)`` comes back in the dict."""
        ...

    def inspect(self, txs: Sequence[Mapping[str, Any]], check: Check) -> None:
        """Run ``check`` on the current state of these rows' customers; change nothing."""
        ...

    def peek(self, customer_id: str) -> CustomerHistory | None:
        """The customer's history if it has one (a copy for a shared store)."""
        ...

    def terminal_values(self, terminal_id: str) -> tuple[float, ...]:
        """The terminal's snapshot as ``definitions.terminal_values`` (zeros if unknown)."""
        ...

    def load_seed(self, bundle_path: str | os.PathLike[str]) -> None:
        """(Re)seed from a bundle, keeping what live traffic added since the seed's day."""
        ...

    def load_terminals(self, terminals: Mapping[str, Mapping[str, float]], as_of: date) -> None:
        """Replace the terminal snapshots by fresher ones (the daily refresh)."""
        ...

    def stats(self) -> dict[str, Any]:
        """Sizes and provenance, for /models and monitoring."""
        ...

    def close(self) -> None: ...


def _no_records(_: str) -> None:
    return None


def _terminal_vectors(terminals: Mapping[str, Mapping[str, float]]) -> dict[str, tuple]:
    return {t: terminal_values(snap) for t, snap in terminals.items()}


class EmbeddedStore:
    """In-process store: plain dicts, updated in place by the scoring path."""

    backend = "embedded"
    shared = False

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._customers: dict[str, CustomerHistory] = {}
        # Terminal snapshots as tuples in TERMINAL_FEATURES order: read per transaction.
        self._terminal_values: dict[str, tuple[float, ...]] = {}
        self.as_of: date | None = None
        self.seed_as_of: date | None = None  # the seed's day (as_of moves on with refreshes)
        self.seeded_from: str | None = None
        self._created = 0
        self._since_sweep = 0
        self.evicted = 0

    def history(self, customer_id: str) -> CustomerHistory:
        """The live history (created empty for a new card). Call under ``lock``."""
        history = self._customers.get(customer_id)
        if history is None:
            history = self._customers[customer_id] = CustomerHistory()
            self._created += 1
            self._since_sweep += 1
        return history

    def peek(self, customer_id: str) -> CustomerHistory | None:
        return self._customers.get(customer_id)

    def apply(
        self, txs: Sequence[Mapping[str, Any]], categoricals: Sequence[str], check: Check
    ) -> tuple[list[tuple[Any, ...] | None], dict[str, tuple[Any, ...]]]:
        with self.lock:
            check(txs, self.peek, _no_records)
            vectors = online_vectors(txs, self.history, self.terminal_values, categoricals)
            if self._since_sweep >= EVICT_EVERY:
                self.evict_idle()
        return vectors, {}

    def inspect(self, txs: Sequence[Mapping[str, Any]], check: Check) -> None:
        with self.lock:
            check(txs, self.peek, _no_records)

    def evict_idle(self) -> int:
        """Forget cards whose newest entry is more than ``IDLE_DAYS`` before the newest entry
        of any card (the data's clock): no window can reach them. Returns how many."""
        with self.lock:
            newest = max((h.keys[-1] for h in self._customers.values() if h.keys), default=0)
            cutoff = newest - _IDLE_SPAN
            idle = [c for c, h in self._customers.items() if not h.keys or h.keys[-1] < cutoff]
            for customer_id in idle:
                del self._customers[customer_id]
            self._since_sweep = 0
            self.evicted += len(idle)
            return len(idle)

    def terminal_values(self, terminal_id: str) -> tuple[float, ...]:
        values = self._terminal_values.get(terminal_id)
        return _UNKNOWN_TERMINAL if values is None else values

    def load_seed(self, bundle_path: str | os.PathLike[str]) -> None:
        """Replace state before the seed's day by the seed; keep live entries from that day on.

        The seed holds every transaction before ``as_of`` (the batch pipeline's truth, which
        also covers traffic this process never saw); entries the service added on or after
        ``as_of`` are its own traffic and are carried over, so a daily reseed loses nothing.
        """
        seed = read_store_seed(bundle_path)  # the slow part, outside the lock
        vectors = _terminal_vectors(seed.terminals)
        start = store_day_key(seed.as_of)
        customers = seed.customers
        with self.lock:
            for customer_id, live in self._customers.items():
                merged = customers.get(customer_id)
                if merged is None:
                    merged = CustomerHistory()
                if merged.extend(live, since=start):  # live traffic from the seed's day on
                    customers[customer_id] = merged
            self._customers = customers
            self._terminal_values = vectors
            self.as_of = self.seed_as_of = seed.as_of
            self.seeded_from = _bundle_name(bundle_path)
            self._created = 0
            self.evict_idle()

    def load_terminals(self, terminals: Mapping[str, Mapping[str, float]], as_of: date) -> None:
        vectors = _terminal_vectors(terminals)
        with self.lock:
            self._terminal_values = vectors
            self.as_of = as_of

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "backend": self.backend,
                "as_of": self.as_of.isoformat() if self.as_of else None,
                "seed_as_of": self.seed_as_of.isoformat() if self.seed_as_of else None,
                "seeded_from": self.seeded_from,
                "customers": len(self._customers),
                "customers_created_since_seed": self._created,
                "customers_evicted": self.evicted,
                "history_rows": sum(len(h.keys) for h in self._customers.values()),
                "terminals": len(self._terminal_values),
            }

    def close(self) -> None:
        """Nothing to release."""


def _bundle_name(bundle_path: str | os.PathLike[str]) -> str:
    """What /models shows of a bundle's location: its folder name, never a machine path."""
    return Path(bundle_path).name


# ------------------------------------------------------------------------------- Redis

_ENCODER = msgspec.msgpack.Encoder()
_HISTORY = msgspec.msgpack.Decoder(tuple[list[int], list[float], list[int], list[str]])
_RECORD = msgspec.msgpack.Decoder(tuple[tuple[Any, ...], tuple[Any, ...]])
_VALUES = msgspec.msgpack.Decoder(list[float])
HISTORY_TTL_S = IDLE_DAYS * 86_400  # wall-clock: a card idle this long is evicted by Redis
RECORD_TTL_S = 7 * 86_400  # how long a retried transaction id is recognised by every worker
MAX_CONFLICT_RETRIES = 50
SEED_CHUNK = 1_000
DECODED_CARDS = 20_000  # per worker: recently written histories kept decoded
TOKEN_BYTES = 8  # a history's value: a random version token, then the msgpack arrays

# Compare-and-set of one update. KEYS: the histories, then the records of the ids. ARGV:
# how many histories, their tokens as read ("" if absent), their new values ("" to leave one
# as is), the records' new values ("" for a record read as present: it never changes), then
# the two TTLs. Returns 1 if written; else (a history changed, or a record appeared since
# the read) the current values of all KEYS, so that the caller retries without a read.
_COMPARE_AND_SET = f"""
local n = tonumber(ARGV[1])
local fresh = true
for i = 1, n do
  if redis.call('GETRANGE', KEYS[i], 0, {TOKEN_BYTES - 1}) ~= ARGV[1 + i] then fresh = false end
end
for i = n + 1, #KEYS do
  if ARGV[1 + n + i] ~= '' and redis.call('EXISTS', KEYS[i]) == 1 then fresh = false end
end
if not fresh then return redis.call('MGET', unpack(KEYS)) end
local history_ttl, record_ttl = ARGV[#ARGV - 1], ARGV[#ARGV]
for i = 1, #KEYS do
  local value = ARGV[1 + n + i]
  if value ~= '' then
    redis.call('SET', KEYS[i], value, 'EX', i <= n and history_ttl or record_ttl)
  end
end
return 1
"""

# step(histories, records) -> (new histories by customer, new records by id, result)
Step = Callable[
    [dict[str, CustomerHistory | None], dict[str, tuple]],
    tuple[Mapping[str, CustomerHistory], Mapping[str, bytes], Any],
]


class RedisStore:
    """Histories, terminal snapshots and applied-id records in Redis (``redis://`` URL).

    Keys (``prefix`` default ``fraud:``): ``h:<customer>`` a history (a version token, then
    msgpack of its four lists; TTL ``HISTORY_TTL_S`` renewed at every write),
    ``tx:<transaction_id>`` the request fields and feature vector of an applied transaction
    (``RECORD_TTL_S``), ``terminals`` a hash of snapshots, ``meta`` a hash with the seed's
    and the snapshots' day. Each worker holds the terminal snapshots in memory too (read per
    transaction, refreshed daily). One update is one MGET and one script call, however many
    transactions it carries (a batch chunk is as cheap in round trips as one transaction).
    """

    backend = "redis"
    shared = True

    def __init__(self, url: str, prefix: str = "fraud:") -> None:
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url)
        self._compare_and_set = self.client.register_script(_COMPARE_AND_SET)
        self.prefix = prefix
        self._terminal_values: dict[str, tuple[float, ...]] = {}
        self.as_of: date | None = None
        self.seed_as_of: date | None = None
        self.conflicts = 0
        # customer -> (token, history): the histories this worker last wrote, most recent
        # last; a card scored by this worker again skips decoding and the window rebuild.
        self._decoded: OrderedDict[str, tuple[bytes, CustomerHistory]] = OrderedDict()

    def _h(self, customer_id: str) -> str:
        return f"{self.prefix}h:{customer_id}"

    def _tx(self, transaction_id: str) -> str:
        return f"{self.prefix}tx:{transaction_id}"

    @property
    def _meta(self) -> str:
        return f"{self.prefix}meta"

    @property
    def _terminals(self) -> str:
        return f"{self.prefix}terminals"

    @staticmethod
    def _history(blob: bytes | None) -> CustomerHistory | None:
        if blob is None:
            return None
        return CustomerHistory.from_arrays(*_HISTORY.decode(memoryview(blob)[TOKEN_BYTES:]))

    def peek(self, customer_id: str) -> CustomerHistory | None:
        return self._history(self.client.get(self._h(customer_id)))

    def _read(self, customer_id: str, blob: bytes | None) -> CustomerHistory | None:
        """The history a value holds: this worker's decoded copy while the value's token is
        the one it last wrote or read (no decoding, and the window index kept), else
        decoded afresh. The copy is handed out to be changed: ``_transact`` keeps it only if
        the change is written, and forgets it otherwise."""
        if blob is None:
            return None
        cached = self._decoded.get(customer_id)
        if cached is not None and blob.startswith(cached[0]):
            self._decoded.move_to_end(customer_id)
            return cached[1]
        return self._history(blob)

    def _keep(self, customer_id: str, token: bytes, history: CustomerHistory) -> None:
        decoded = self._decoded
        decoded[customer_id] = (token, history)
        decoded.move_to_end(customer_id)
        if len(decoded) > DECODED_CARDS:
            decoded.popitem(last=False)

    def _transact(
        self,
        customers: Sequence[str],
        tids: Sequence[str],
        step: Step,
        optimistic: bool = False,
    ) -> Any:
        """Run ``step`` on these customers' histories and these ids' records, and write what
        it returns if nothing it read has changed since; else run it again on the current
        values (``step`` must have no effect but on the histories it is given, which are
        this call's to change).

        The first run reads the values (MGET), or, ``optimistic`` and with every customer's
        history kept decoded by this worker, assumes them: the kept histories and no
        records (new transactions). The compare-and-set then verifies the assumption in the
        same round trip as the write: a card this worker scored last costs one round trip.
        A ``step`` that raises on assumed values runs again on read ones before the error
        counts (a request is only ever refused on the store's actual state)."""
        history_keys = [self._h(c) for c in customers]
        keys = history_keys + [self._tx(t) for t in tids]
        decoded = self._decoded
        blobs: list[bytes | None] | None = None
        if not (optimistic and all(c in decoded for c in customers)):
            blobs = self.client.mget(keys)
        for _ in range(MAX_CONFLICT_RETRIES):
            if blobs is None:
                tokens = [decoded[c][0] for c in customers]
                histories = {c: decoded[c][1] for c in customers}
                records: dict[str, tuple] = {}
            else:
                tokens = [b"" if v is None else v[:TOKEN_BYTES] for v in blobs[: len(customers)]]
                histories = {c: self._read(c, v) for c, v in zip(customers, blobs, strict=False)}
                records = {
                    t: _RECORD.decode(v)
                    for t, v in zip(tids, blobs[len(customers) :], strict=True)
                    if v is not None
                }
            try:
                new_histories, new_records, result = step(histories, records)
            except BaseException as exc:
                self._forget(customers)  # the step may have changed a kept history
                if blobs is None and isinstance(exc, Exception):  # decide on read values
                    blobs = self.client.mget(keys)
                    continue
                raise
            if not new_histories and not new_records and blobs is not None:
                return result
            new_tokens = {c: os.urandom(TOKEN_BYTES) for c in new_histories}
            args: list[Any] = [len(customers), *tokens]
            args += [
                new_tokens[c] + _ENCODER.encode(new_histories[c].to_arrays())
                if c in new_histories
                else b""
                for c in customers
            ]
            args += [new_records.get(t, b"") for t in tids]
            args += [HISTORY_TTL_S, RECORD_TTL_S]
            answer = self._compare_and_set(keys=keys, args=args)
            if answer == 1:
                for c, history in new_histories.items():
                    self._keep(c, new_tokens[c], history)
                return result
            self._forget(customers)
            self.conflicts += 1
            blobs = answer
        raise StoreBusy(f"online store: {MAX_CONFLICT_RETRIES} conflicting updates in a row")

    def _forget(self, customers: Sequence[str]) -> None:
        for c in customers:
            self._decoded.pop(c, None)

    def inspect(self, txs: Sequence[Mapping[str, Any]], check: Check) -> None:
        def step(histories: dict, records: dict) -> tuple[dict, dict, None]:
            check(txs, histories.get, lambda t: records[t][0] if t in records else None)
            return {}, {}, None

        self._transact(*_keys_of(txs), step)

    def apply(
        self, txs: Sequence[Mapping[str, Any]], categoricals: Sequence[str], check: Check
    ) -> tuple[list[tuple[Any, ...] | None], dict[str, tuple[Any, ...]]]:
        def step(histories: dict, records: dict) -> tuple[dict, dict, tuple[list, dict]]:
            check(txs, histories.get, lambda t: records[t][0] if t in records else None)
            todo = [tx for tx in txs if tx["transaction_id"] not in records]

            def history_of(customer_id: str) -> CustomerHistory:
                history = histories.get(customer_id)
                if history is None:
                    history = histories[customer_id] = CustomerHistory()
                return history

            vectors = online_vectors(todo, history_of, self.terminal_values, categoricals)
            new_histories = {tx["customer_id"]: histories[tx["customer_id"]] for tx in todo}
            new_records = {
                tx["transaction_id"]: _ENCODER.encode((request_fields(tx), vector))
                for tx, vector in zip(todo, vectors, strict=True)
            }
            applied = iter(vectors)
            out = [None if tx["transaction_id"] in records else next(applied) for tx in txs]
            return new_histories, new_records, (out, records)

        return self._transact(*_keys_of(txs), step, optimistic=True)

    def terminal_values(self, terminal_id: str) -> tuple[float, ...]:
        values = self._terminal_values.get(terminal_id)
        return _UNKNOWN_TERMINAL if values is None else values

    def _read_terminals(self) -> None:
        """The shared snapshots into this worker's memory (at start and after a refresh)."""
        meta = self.client.hgetall(self._meta)
        raw = meta.get(b"terminals_as_of")
        values: dict[str, tuple[float, ...]] = {}
        for tid, blob in self.client.hscan_iter(self._terminals, count=10_000):
            values[tid.decode()] = tuple(_VALUES.decode(blob))
        self._terminal_values = values
        self.as_of = date.fromisoformat(raw.decode()) if raw else None

    def shared_as_of(self) -> date | None:
        """The snapshots' day in Redis (a worker whose ``as_of`` is older re-reads them)."""
        raw = self.client.hget(self._meta, "terminals_as_of")
        return date.fromisoformat(raw.decode()) if raw else None

    def refresh(self) -> bool:
        """Re-read the snapshots if another process refreshed them; True if it did."""
        shared = self.shared_as_of()
        if shared is not None and shared != self.as_of:
            self._read_terminals()
            return True
        return False

    def load_terminals(self, terminals: Mapping[str, Mapping[str, float]], as_of: date) -> None:
        """Write the snapshots to Redis (a new hash, renamed over the old one: readers see
        the old or the new table, never a mix) and read them back."""
        staging = f"{self._terminals}:staging"
        with self.client.pipeline(transaction=False) as pipe:
            pipe.delete(staging)
            items = list(terminals.items())
            for lo in range(0, len(items), SEED_CHUNK):
                mapping = {
                    t: _ENCODER.encode(list(terminal_values(snap)))
                    for t, snap in items[lo : lo + SEED_CHUNK]
                }
                pipe.hset(staging, mapping=mapping)
            pipe.execute()
        with self.client.pipeline(transaction=True) as pipe:
            if terminals:
                pipe.rename(staging, self._terminals)
            else:
                pipe.delete(self._terminals)
            pipe.hset(self._meta, "terminals_as_of", as_of.isoformat())
            pipe.execute()
        self._read_terminals()

    def load_seed(self, bundle_path: str | os.PathLike[str]) -> None:
        """Seed Redis from a bundle once per seed day (whichever worker comes first, under a
        Redis lock); every worker then reads the terminal snapshots.

        A customer's seeded history is the seed plus the live entries Redis holds from the
        seed's day on, merged in one optimistic transaction per chunk of customers, so
        traffic scored meanwhile by other workers is kept.
        """
        seed: StoreSeed | None = None
        with self.client.lock(f"{self.prefix}seed-lock", timeout=600, blocking_timeout=600):
            raw = self.client.hget(self._meta, "seed_as_of")
            seeded = date.fromisoformat(raw.decode()) if raw else None
            seed_day = _manifest_day(bundle_path)
            if seeded is None or seeded < seed_day:
                seed = read_store_seed(bundle_path)
                self._merge_seed(seed)
                self.client.hset(
                    self._meta,
                    mapping={
                        "seed_as_of": seed.as_of.isoformat(),
                        "seeded_from": _bundle_name(bundle_path),
                    },
                )
                terminals_day = self.shared_as_of()
                if terminals_day is None or terminals_day <= seed.as_of:
                    self.load_terminals(seed.terminals, seed.as_of)
                seeded = seed.as_of
        self.seed_as_of = seeded
        self._read_terminals()

    def _merge_seed(self, seed: StoreSeed) -> None:
        start = store_day_key(seed.as_of)
        ids = list(seed.customers)
        for lo in range(0, len(ids), SEED_CHUNK):
            chunk = ids[lo : lo + SEED_CHUNK]

            def step(
                histories: dict, records: dict, chunk: list[str] = chunk
            ) -> tuple[dict, dict, None]:
                merged = {}
                for customer_id in chunk:
                    seeded = seed.customers[customer_id].to_arrays()  # a retry starts afresh
                    history = merged[customer_id] = CustomerHistory.from_arrays(*seeded)
                    live = histories.get(customer_id)
                    if live is not None:
                        history.extend(live, since=start)
                return merged, {}, None

            self._transact(chunk, (), step)

    def stats(self) -> dict[str, Any]:
        meta = {k.decode(): v.decode() for k, v in self.client.hgetall(self._meta).items()}
        return {
            "backend": self.backend,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "seed_as_of": meta.get("seed_as_of"),
            "seeded_from": meta.get("seeded_from"),
            "terminals": len(self._terminal_values),
            "keys": self.client.dbsize(),
            "conflict_retries": self.conflicts,
        }

    def close(self) -> None:
        self.client.close()


def _keys_of(txs: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """The distinct customers and transaction ids of some rows, in order."""
    customers = list(dict.fromkeys(tx["customer_id"] for tx in txs))
    return customers, list(dict.fromkeys(tx["transaction_id"] for tx in txs))


def _manifest_day(bundle_path: str | os.PathLike[str]) -> date:
    from fraud_assets.lib.bundle import read_manifest

    return date.fromisoformat(read_manifest(bundle_path)["store_as_of"])


def open_store(url: str | None = None) -> OnlineStore:
    """The store ``FRAUD_ONLINE_STORE`` names: unset or ``embedded`` -> in process,
    ``redis://`` / ``rediss://`` / ``unix://`` -> Redis."""
    url = (url if url is not None else os.environ.get(ONLINE_STORE_ENV, "")).strip()
    if url in ("", "embedded"):
        return EmbeddedStore()
    if url.split("://", 1)[0] in ("redis", "rediss", "unix"):
        return RedisStore(url)
    raise ValueError(f"{ONLINE_STORE_ENV}={url!r}: expected 'embedded' or a redis:// URL")
