"""What a method that cannot run raises, and what a fit records in its place.

A method that cannot run on the data (one budget, a concave valley, no training curves) raises
NotFittable with the reason a user reads; the fit keeps an Unfit in that method's slot, so the
JSON says {"fittable": false, "reason": ...} and a reader can tell "not possible on this data"
from "not attempted".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


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
