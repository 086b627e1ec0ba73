"""The jobs: the steps a command runs (plan, lock, create, sync, image, ci, recipe, matrix audit), over the
pure layers and the edges. A job takes typed inputs and never sees argv; the CLI adapts argv to it."""
