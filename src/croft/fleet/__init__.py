"""The fleet: a site's machines as real systemd machines on this host (systemd-nspawn).

For trying a site and for croft's own end-to-end tests: each machine boots systemd in about a
second on a copy-on-write copy of one cached Debian rootfs, on a bridge inside a network
namespace of its own, at the address its machines/<name>.toml gives.
"""
