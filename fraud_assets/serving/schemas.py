"""Request schemas and the one error shape every client mistake is answered with.

Validation is strict on purpose: a payment system should reject "12.5" for an amount or a
timestamp without a timezone rather than guess, and say which field was wrong. Bodies are
validated straight from JSON bytes (one parse, pydantic-core); numbers-as-strings,
strings-as-numbers, NaN and Infinity are refused, and timestamps must be RFC 3339 date-times
with an offset (``RFC3339_PATTERN``: no epoch seconds, no ``+0100``, no space for the 'T').
/score_batch bodies go through ``parse_batch``: msgspec first (same rules, ~3x cheaper),
pydantic for anything msgspec does not accept in full, so answers and errors are the same
either way.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar, get_args

import msgspec
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError, SchemaValidator, core_schema

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
        raise PydanticCustomError("timestamp_range", "timestamp out of range") from None
    if ts.year not in _YEARS:
        raise PydanticCustomError(
            "timestamp_range", f"timestamp must be between {EARLIEST.year} and {LATEST.year}"
        )
    return ts


# RFC 3339 section 5.6 ``date-time``, which is what JSON Schema's ``format: date-time`` means:
# 'T' and 'Z' may be lower case (the RFC's own note), any number of fractional digits (past 6
# they are truncated), the offset always with a colon. Not accepted although pydantic and
# msgspec are lenient there: a space for the 'T' (allowed "by note" only, and ambiguous in
# logs), '+0100', epoch seconds, ',' as decimal mark, minutes without seconds. ASCII digits
# only ([0-9], not \d: Python's \d also matches other scripts' digits).
_DATE = "[0-9]{4}-[0-9]{2}-[0-9]{2}"
_CLOCK = "[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}"
_OFFSET = "(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
_RFC3339 = re.compile(f"{_DATE}{_CLOCK}(?:\\.[0-9]+)?{_OFFSET}")
# The documented pattern (OpenAPI): the same grammar with the year limited to the range, as
# far as a pattern can say it (the range is of the UTC instant: 1970-01-01T00:30:00+01:00 is
# 1969 in UTC and refused, though the pattern matches it).
RFC3339_PATTERN = (
    "^(?:19[7-9][0-9]|2[01][0-9]{2})" + _RFC3339.pattern.removeprefix("[0-9]{4}") + "$"
)
if (EARLIEST.year, LATEST.year) != (1970, 2200):
    raise RuntimeError("RFC3339_PATTERN's years must follow EARLIEST and LATEST")
TS_FORMAT = "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)"
# Worded so it still says what pydantic's own messages said ("valid datetime", "timezone").
_NOT_RFC3339 = (
    f"Input should be a valid datetime in RFC 3339 form, with a timezone offset: {TS_FORMAT}"
)
# pydantic's strict string parse, called directly: a function validator gets a Python str,
# which a strict datetime field refuses, and lax mode's messages are worse ("datetime or
# date, unexpected extra characters" for an hour 24).
_PARSE_STAMP = SchemaValidator(core_schema.datetime_schema(strict=True))


def _timestamp(value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
    """A string: the RFC 3339 form first, then pydantic's parse (its messages for values out of
    range), then the range in UTC. A datetime (Python callers) is only range-checked; anything
    else (epoch numbers...) is refused as strict mode refused it."""
    if isinstance(value, str):
        if _RFC3339.fullmatch(value) is None:
            raise PydanticCustomError("rfc3339", _NOT_RFC3339)
        try:
            return _in_utc(_PARSE_STAMP.validate_strings(value))
        except ValidationError as exc:
            reason = exc.errors(include_url=False)[0]["msg"]
            raise PydanticCustomError("datetime_parsing", "{reason}", {"reason": reason}) from None
    if not isinstance(value, datetime):
        raise PydanticCustomError("datetime_type", "Input should be a valid datetime")
    return _in_utc(handler(value))


Timestamp = Annotated[
    AwareDatetime,
    Strict(False),
    WrapValidator(_timestamp),
    Field(
        description=f"RFC 3339 date-time with an offset, {TS_FORMAT} ('t' and 'z' may be lower "
        f"case); from {EARLIEST:%Y-%m-%dT%H:%M:%SZ} up to, not including, "
        f"{LATEST:%Y-%m-%dT%H:%M:%SZ} (in UTC)",
        json_schema_extra={"pattern": RFC3339_PATTERN},
    ),
]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Transaction(BaseModel):
    """One card transaction as a client sends it (the raw-transaction data contract).

    ``ts`` is an RFC 3339 date-time with an offset, 'T' (or 't') between date and time: the
    space the RFC allows only in a note is refused, as are offsets without a colon and epoch
    seconds, so a timestamp means one thing in every client and log.
    """

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
    reasons: list[Reason] | None = None  # with explain
    features: dict[str, Any] | None = None  # with explain: the values the model saw


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


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorResponse(BaseModel):
    """Documentation of ``RequestError.body``: the JSON object of every refusal the service
    itself gives (not of BentoML's own 429/504 answers, which are ``{"error"}`` only)."""

    error: str = Field(description="machine-readable code, e.g. invalid_request")
    field: str | None = Field(
        description="the field at fault, dotted (transactions.3.ts), or body, content-type, "
        "x-api-key; null when no one field is"
    )
    message: str
    details: list[ErrorDetail] | None = Field(
        default=None, description="when several fields are wrong: up to 20 of them"
    )


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
# the delicate part: msgspec's decoder takes '+0100' and a space for the 'T', so the batch's
# stamps are first matched against the RFC 3339 grammar, in one regex call over all of them;
# and msgspec rounds fractions past microseconds where pydantic truncates, so that regex
# leaves stamps with more than 6 fractional digits to pydantic.
_FastId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_FastLabel = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_FastStamps = list[Annotated[datetime, msgspec.Meta(tz=True)]]
_FAST_STAMP = f"{_DATE}{_CLOCK}(?:\\.[0-9]{{1,6}})?{_OFFSET}"
# All the stamps joined by "\n", one C call (~0.16 us a stamp; possessive: no backtracking).
_FAST_STAMPS = re.compile(f"(?:{_FAST_STAMP}\n)*+{_FAST_STAMP}")


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
    if _FAST_STAMPS.fullmatch("\n".join(stamps)) is None:  # a "\n" inside a stamp: convert fails
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
