"""Numba kernels: pure functions of arrays, compiled lazily and cached.

Nothing in this package holds state or touches Python objects; the public,
validated entry points live in :mod:`fastem.kernels`.
"""
