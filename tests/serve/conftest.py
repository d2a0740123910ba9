"""The serve tests provision machines with the image tests' site and its built images."""

from tests.images.conftest import images, site, store

__all__ = ["images", "site", "store"]
