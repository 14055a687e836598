"""Speed and memory benchmarks of stcal-models against stcal 1.17.0 (``make bench``).

Not part of the installed package.  Run ``python -m benchmarks.run --help`` from the
repository root; case modules live in :mod:`benchmarks.cases`.
"""
