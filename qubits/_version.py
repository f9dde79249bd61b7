"""The release, in a module of its own so that every floor can name it without importing the package's face."""

__version__ = "0.1.0"
