"""Renderers: pure functions from a lock or a plan to the text of a generated file.

``dockerfile`` (Dockerfile, build context, tags, labels), ``ci`` (bake file, GitHub workflow), ``recipe``
(the validated spec of a WSL2 or Windows recipe, and its checklist), ``wsl2`` (bash), ``windows``
(PowerShell). Every value they embed is checked by ``values``, the one validator module; templates longer
than a screen live in ``templates/`` as package data. Nothing here touches the world.
"""

from __future__ import annotations

__all__ = ["UV_VERSION"]

# uv pinned into what envbuilder generates: the image's uv stage and the recipes' standalone installer.
UV_VERSION = "0.13.9"
