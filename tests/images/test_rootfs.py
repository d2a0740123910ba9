"""Reading debootstrap's failures (the builds themselves run in test_recipes and test_disk)."""

from __future__ import annotations

from croft.images.rootfs import unmet_dependency

# From a real failure (bookworm, cloud-init without python3-cffi-backend), shortened.
LOG = """\
dpkg: base-passwd: dependency problems, but configuring anyway as you requested:
 base-passwd depends on libc6 (>= 2.34); however:
  Package libc6 is not installed.

Setting up base-passwd (3.6.1) ...
dpkg: dependency problems prevent configuration of python3-cryptography:
 python3-cryptography depends on python3-cffi-backend-api-min (<= 9729); however:
  Package python3-cffi-backend-api-min is not installed.

dpkg: error processing package python3-cryptography (--configure):
 dependency problems - leaving unconfigured
dpkg: dependency problems prevent configuration of python3-oauthlib:
 python3-oauthlib depends on python3-cryptography; however:
  Package python3-cryptography is not configured yet.
"""


def test_the_unmet_dependency_is_the_root_cause_not_what_follows_from_it() -> None:
    assert unmet_dependency(LOG) == ("python3-cryptography", "python3-cffi-backend-api-min (<= 9729)")
    assert unmet_dependency("Setting up base-passwd (3.6.1) ...\n") is None
