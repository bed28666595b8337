"""client package of lmukws."""
