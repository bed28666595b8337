"""models package of lmukws."""
