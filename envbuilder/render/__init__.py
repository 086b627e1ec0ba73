"""Renderers: pure functions from a lock or a plan to the text of a generated file.

``dockerfile`` (Dockerfile, build context, tags, labels), ``ci`` (bake file, GitHub workflow), ``recipe``
(the validated spec of a WSL2 or Windows recipe, and its checklist), ``wsl2`` (bash), ``windows``
(PowerShell). Every value they embed is checked by ``values``, the one validator module; templates longer
than a screen live in ``templates/`` as package data. Nothing here touches the world, nor reads the matrix:
release facts (uv's version, the pinned digests) come in as values (``model.images.PinTable``).
"""

from __future__ import annotations

__all__: list[str] = []
