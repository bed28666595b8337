"""server package of lmukws."""
