"""Edges: the modules that touch the world (files, caches, processes, the network, the host)."""
