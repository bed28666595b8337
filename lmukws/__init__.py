"""lmukws: real-time keyword spotting with LMUFormer and Spiking LMUFormer.

The distribution's packages are ``models``, ``streaming``, ``server``, ``client``, ``training``
and ``benchmarks``; this package only holds the ``lmukws`` command-line dispatcher.
"""

__version__ = "0.1.0"
