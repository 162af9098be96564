"""Request schemas and the one error shape every client mistake is answered with.

Validation is strict on purpose: a payment system should reject "12.5" for an amount or a
timestamp without a timezone rather than guess, and say which field was wrong. Bodies are
validated straight from JSON bytes (one parse, pydantic-core), so ISO timestamps are accepted
while numbers-as-strings, strings-as-numbers, NaN and Infinity are not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

MAX_BATCH = 1_000
MAX_BODY_BYTES = 256 * 1024
MAX_AMOUNT = 1e9  # far above any card payment; keeps window sums finite
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def _in_utc(ts: datetime) -> datetime:
    """Normalise to UTC once, here; reject instants the feature code cannot place."""
    try:
        ts = ts.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp out of range") from None
    if not EARLIEST <= ts < LATEST:
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


class BatchResponse(BaseModel):
    results: list[ScoreResponse]


class FeedbackResponse(BaseModel):
    stored: bool


class ErrorResponse(BaseModel):
    error: str
    field: str | None
    message: str
    details: list[dict[str, str]] | None = None


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
