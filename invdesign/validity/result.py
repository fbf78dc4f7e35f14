"""Result types shared by the validity checks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ValidityResult:
    """Verdict of one validity check.

    Attributes:
        valid: Whether the item passes the check.
        reason: Why it failed, or which rule made it pass (e.g. ``"alloy (all metals)"``).
    """

    valid: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.valid


@dataclass(frozen=True)
class StructureValidity(ValidityResult):
    """Structural verdict under our criterion (`valid`) and under CDVAE's (`cdvae_valid`).

    Attributes:
        cdvae_valid: CDVAE's structural validity: every distance between two distinct sites
            (minimum image) >= 0.5 A and cell volume >= 0.1 A^3; periodic self-images and the
            volume per atom are not checked.
    """

    cdvae_valid: bool = False
