"""Pure values: the closed sets (``types``), and the models built from them (matrix, target, lock, errors).

No process, no network, no cache: the matrix and lock readers open only the files they are named."""
