"""croft: bootstrap as code for a home cloud."""

__version__ = "0.1.0"
