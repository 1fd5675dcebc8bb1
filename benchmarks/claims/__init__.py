"""Claims benchmark: one pre-registered synthetic experiment per method (``python -m benchmarks.claims``).

See ``benchmarks/claims/README.md`` for the claims, the protocol and the commands.
"""
