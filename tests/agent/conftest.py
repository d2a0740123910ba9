"""The agent's actions run for real on a loop device here, with the test site's images served
from loopback; the disk they make is then booted in QEMU."""

from tests.images.conftest import images, site, store

__all__ = ["images", "site", "store"]
