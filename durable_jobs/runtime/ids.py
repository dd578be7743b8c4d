"""Instance ids and idempotency keys: what the client accepts as one."""

from __future__ import annotations

import unicodedata

from ..errors import ValidationError

MAX_ID_BYTES = 255

# Control characters break logs and terminals; format characters (bidi overrides,
# zero-width joiners, soft hyphens) and line separators make two different ids look
# the same, or an id look like something else, wherever it is shown.
_REFUSED = {
    "Cc": "control character",
    "Cf": "invisible format character",
    "Zl": "line separator",
    "Zp": "paragraph separator",
}


def check_id(key: object, what: str = "id") -> str:
    """An instance id (or idempotency key): a non-empty string of at most 255 bytes
    of valid Unicode without control characters, invisible format characters (Unicode
    category Cf: bidi overrides, zero-width joiners, …) or line separators."""
    if not isinstance(key, str):
        raise ValidationError(
            f"invalid {what} {key!r}: expected a string, got {type(key).__name__}"
        )
    if not key:
        raise ValidationError(f"invalid {what} '': must not be empty")
    try:
        size = len(key.encode())
    except UnicodeEncodeError:
        raise ValidationError(f"invalid {what} {key[:40]!r}: not valid Unicode text") from None
    if size > MAX_ID_BYTES:
        raise ValidationError(
            f"invalid {what} {key[:40]!r}…: {size} bytes, the limit is {MAX_ID_BYTES}"
        )
    if not key.isprintable():  # cheap: only a non-printable id needs a closer look
        _check_characters(key, what)
    return key


def _check_characters(key: str, what: str) -> None:
    for char in key:
        kind = _REFUSED.get(unicodedata.category(char))
        if kind is not None:
            name = unicodedata.name(char, "").lower()
            raise ValidationError(
                f"invalid {what} {key!r}: contains the {kind} U+{ord(char):04X}"
                + (f" ({name})" if name else "")
            )


KINDS = ("continuous", "debounce", "task")


def split_instance_id(instance_id: object) -> tuple[str, str, str]:
    """``KIND:JOB:ID`` → its three parts, each checked."""
    text = check_id(instance_id, "instance id")
    kind, job, key = [*text.split(":", 2), "", ""][:3]
    if kind not in KINDS or not job or not key:
        raise ValidationError(
            f"invalid instance id {text!r}: expected KIND:JOB:ID with KIND one of "
            f"{', '.join(KINDS)}"
        )
    return kind, job, key
