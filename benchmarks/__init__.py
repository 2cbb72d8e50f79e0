"""Benchmarks of gfpgan-debug: ``python benchmarks/run.py --out build/bench`` (``make bench``)."""
