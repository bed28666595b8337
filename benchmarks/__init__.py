"""benchmarks package of lmukws."""
