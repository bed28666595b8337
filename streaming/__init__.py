"""streaming package of lmukws."""
