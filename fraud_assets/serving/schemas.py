"""Request schemas and the one error shape every client mistake is answered with.

Validation is strict on purpose: a payment system should reject "12.5" for an amount or a
timestamp without a timezone rather than guess, and say which field was wrong. Bodies are
validated straight from JSON bytes (one parse, pydantic-core), so ISO timestamps are accepted
while numbers-as-strings, strings-as-numbers, NaN and Infinity are not. /score_batch bodies
go through ``parse_batch``: msgspec first (same rules, ~3x cheaper), pydantic for anything
msgspec does not accept in full, so answers and errors are the same either way.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar, get_args

import msgspec
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from fraud_assets.lib.contracts import ANSWERING_VARIANTS

MAX_BATCH = 1_000
MAX_BODY_BYTES = 256 * 1024
MAX_AMOUNT = 1e9  # far above any card payment; keeps window sums finite
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

# cache_strings="keys": pydantic-core otherwise interns every short string it parses, and
# a batch's values (ids, timestamps) are nearly all new, so the cache is pure cost (~7% of
# parsing a batch).
STRICT = ConfigDict(
    extra="forbid", strict=True, allow_inf_nan=False, frozen=True, cache_strings="keys"
)


# EARLIEST and LATEST are New Year's midnights (UTC), so the range check is a check of the
# UTC year: an int comparison instead of two aware-datetime comparisons (this validator runs
# once per transaction).
_YEARS = range(EARLIEST.year, LATEST.year)
if any(bound != datetime(bound.year, 1, 1, tzinfo=UTC) for bound in (EARLIEST, LATEST)):
    raise RuntimeError("EARLIEST and LATEST must be New Year's midnights in UTC")


def _in_utc(ts: datetime) -> datetime:
    """Normalise to UTC once, here; reject instants the feature code cannot place."""
    try:
        ts = ts.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp out of range") from None
    if ts.year not in _YEARS:
        raise ValueError("timestamp must be between 1970 and 2200")
    return ts


Timestamp = Annotated[AwareDatetime, AfterValidator(_in_utc)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Transaction(BaseModel):
    """One card transaction as a client sends it (the raw-transaction data contract)."""

    model_config = STRICT

    transaction_id: Identifier
    ts: Timestamp
    customer_id: Identifier
    terminal_id: Identifier
    amount: Annotated[float, Field(ge=0, le=MAX_AMOUNT)]
    merchant_category: Label | None = None
    channel: Label | None = None


class ScoreRequest(BaseModel):
    model_config = STRICT

    transaction: Transaction
    explain: bool = False


class BatchRequest(BaseModel):
    model_config = STRICT

    transactions: Annotated[list[Transaction], Field(min_length=1, max_length=MAX_BATCH)]


class FeedbackRequest(BaseModel):
    """A label for a scored transaction (analyst decision, chargeback...)."""

    model_config = STRICT

    transaction_id: Identifier
    is_fraud: bool
    source: Label


class EmptyRequest(BaseModel):
    """Admin and read-only calls take no parameters: anything sent is a mistake."""

    model_config = STRICT


class Reason(BaseModel):
    feature: str
    contribution: float


class ScoreResponse(BaseModel):
    """Documentation of /score's answer (responses are rendered directly, not via this)."""

    transaction_id: str
    fraud_probability: float
    decision: Literal["approve", "review", "decline"]
    model_name: str
    model_version: str
    variant: Literal["champion", "challenger"]
    latency_ms: float
    reasons: list[Reason] | None = None


if get_args(ScoreResponse.model_fields["variant"].annotation) != ANSWERING_VARIANTS:
    raise RuntimeError("ScoreResponse.variant must list contracts.ANSWERING_VARIANTS")


class BatchResponse(BaseModel):
    results: list[ScoreResponse]


class FeedbackResponse(BaseModel):
    stored: bool


class RequestError(Exception):
    """A client mistake: rendered as a 4xx JSON object naming the field and the problem."""

    def __init__(
        self,
        status: int,
        error: str,
        field: str | None,
        message: str,
        details: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.field = field
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error, "field": self.field, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out


_MESSAGES = {
    "missing": "required field is missing",
    "extra_forbidden": "unexpected field (not part of the request schema)",
    "model_type": "must be a JSON object",
}


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "body"


def _message(error: Any) -> str:
    return _MESSAGES.get(error["type"], error["msg"])


def from_validation_error(exc: ValidationError) -> RequestError:
    """The first problem names the field; up to 20 more go into ``details``."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        return RequestError(400, "invalid_json", "body", first["msg"])
    details = [{"field": _field(e["loc"]), "message": _message(e)} for e in errors[:20]]
    return RequestError(
        400,
        "invalid_request",
        _field(first["loc"]),
        _message(first),
        details if len(details) > 1 else None,
    )


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], body: bytes) -> M:
    """Validate a raw JSON body against ``model`` or raise ``RequestError``."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def parse_optional(model: type[M], body: bytes) -> M:
    """Like ``parse`` but an empty body means ``{}`` (for calls that take no parameters)."""
    return parse(model, body if body.strip() else b"{}")


# ------------------------------------------------------------------ batches: a fast path

# /score_batch bodies are first decoded by msgspec into the structs below, which state the same
# constraints as ``Transaction`` (pydantic builds a model per row: ~2x the CPU). Whatever the
# fast path does not accept in full goes to ``parse(BatchRequest, ...)``, which then decides:
# so errors are pydantic's, always, and the fast path only has to never accept what pydantic
# rejects and to give the same values (tests fuzz both on the same bodies). Timestamps are
# the delicate part: msgspec rounds fractions past microseconds where pydantic truncates, so
# a body with more than 6 fractional digits anywhere is left to pydantic.
_FastId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_FastLabel = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_FastStamps = list[Annotated[datetime, msgspec.Meta(tz=True)]]
_LONG_FRACTION = re.compile(r"\.\d{7}")


class _FastTransaction(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    transaction_id: _FastId
    ts: str  # converted after the decode (see above)
    customer_id: _FastId
    terminal_id: _FastId
    amount: Annotated[float, msgspec.Meta(ge=0, le=MAX_AMOUNT)]
    merchant_category: _FastLabel | None = None
    channel: _FastLabel | None = None


class _FastBatch(msgspec.Struct, forbid_unknown_fields=True):
    transactions: Annotated[
        list[_FastTransaction], msgspec.Meta(min_length=1, max_length=MAX_BATCH)
    ]


_FAST_BATCH = msgspec.json.Decoder(_FastBatch)


def _fast_batch(body: bytes) -> list[dict[str, Any]] | None:
    """``parse_batch`` for bodies msgspec accepts in full, else None."""
    try:
        txs = _FAST_BATCH.decode(body).transactions
    except (msgspec.MsgspecError, UnicodeDecodeError):
        return None
    stamps = [tx.ts for tx in txs]
    if _LONG_FRACTION.search("\n".join(stamps)):
        return None
    try:  # RFC 3339 with an offset, one C call for the batch
        times = msgspec.convert(stamps, _FastStamps)
        times = [t if t.tzinfo is UTC else t.astimezone(UTC) for t in times]
    except (msgspec.MsgspecError, OverflowError):
        return None
    if min(times) < EARLIEST or max(times) >= LATEST:
        return None
    rows = list(map(msgspec.structs.asdict, txs))
    for row, ts in zip(rows, times, strict=True):
        row["ts"] = ts
    return rows


def parse_batch(body: bytes) -> list[dict[str, Any]]:
    """The transactions of a /score_batch body as field mappings (``Transaction``'s fields,
    ``ts`` an aware UTC datetime), or ``RequestError`` exactly as ``parse(BatchRequest, ...)``
    raises it."""
    rows = _fast_batch(body)
    if rows is None:
        rows = [dict(tx.__dict__) for tx in parse(BatchRequest, body).transactions]
    return rows
