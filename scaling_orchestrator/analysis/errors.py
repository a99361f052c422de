"""What a method that cannot run raises, and what a fit records in its place.

A method that cannot run on the data (one budget, a concave valley, no training curves) raises
NotFittable with the reason a user reads; the fit keeps an Unfit in that method's slot, so the
JSON says {"fittable": false, "reason": ...} and a reader can tell "not possible on this data"
from "not attempted". Read back from fit.json, such a slot is an Unfit again (read_section).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

ABSENT = "not in the fit JSON"  # the reason of a section a fit.json lacks (an older or partial one)


class NotFittable(ValueError):
    """A method that cannot run on this data; the message is the reason shown to the user."""


@dataclass(frozen=True)
class Unfit:
    """A method's slot in a fit when it could not run; reason says why in one line."""

    reason: str
    fittable: ClassVar[bool] = False

    @classmethod
    def from_error(cls, exc: Exception) -> Unfit:
        return cls(str(exc))

    def to_dict(self) -> dict:
        return {"fittable": False, "reason": self.reason}


def read_section(plain, read):
    """A method's fit.json section back: read(plain) for a fitted one, else its Unfit (reason
    ABSENT when the section is missing)."""
    if plain is None:
        return Unfit(ABSENT)
    if not isinstance(plain, dict):
        raise ValueError(f"{plain!r:.60} is not a section (a JSON object)")
    if not plain.get("fittable"):
        return Unfit(str(plain.get("reason", "")))
    return read(plain)
