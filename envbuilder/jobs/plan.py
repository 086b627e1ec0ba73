"""The plan step: what the configured sources serve, then the resolver's plan for a target (or why there is none)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from envbuilder.model.errors import CheckFailed

if TYPE_CHECKING:
    from envbuilder.edge.settings import Settings
    from envbuilder.model.matrix import Matrix
    from envbuilder.model.plan import NoPlan, Plan
    from envbuilder.model.target import Target
    from envbuilder.resolve import Sources

__all__ = ["NoPlanFound", "gather", "plan"]


class NoPlanFound(CheckFailed):
    """No known-good combination: exit 1, and ``no_plan`` says why (the CLI prints it before the error); the
    hint is the resolver's nearest alternative unless the job knows a better one (``upgrade``: a command)."""

    def __init__(self, message: str, no_plan: NoPlan, *, hint: str | None = None) -> None:
        nearest = no_plan.nearest[0] if no_plan.nearest else "see the reasons above"
        super().__init__(message, hint=hint or nearest)
        self.no_plan = no_plan


def gather(settings: Settings, target: Target, matrix: Matrix) -> Sources:
    """What the sources can serve for the torch variants this target could take (probed once)."""
    from envbuilder.edge.sources import gather_sources
    from envbuilder.resolve import index_variants

    return gather_sources(settings, index_variants(target, matrix))


def plan(target: Target, matrix: Matrix, sources: Sources, *, what: str) -> Plan:
    """The resolver's plan; ``NoPlanFound("no known-good combination for <what>")`` when there is none."""
    from envbuilder.model.plan import NoPlan
    from envbuilder.resolve import resolve

    found = resolve(target, matrix, sources)
    if isinstance(found, NoPlan):
        raise NoPlanFound(f"no known-good combination for {what}", found)
    return found
