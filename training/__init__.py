"""training package of lmukws."""
