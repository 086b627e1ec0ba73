"""Pure values: the closed sets (``types``), and the models built from them. Nothing here does I/O."""
