"""fa-dist's version, in a module of its own so that every layer can read it without importing the
library API in fa_dist/__init__.py (and setuptools reads it without importing anything)."""

__version__ = "0.1.0"
