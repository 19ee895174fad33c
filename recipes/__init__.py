"""Recipes of samplewise-rnnt: benchmarks and training set-ups (not part of the installed package)."""
