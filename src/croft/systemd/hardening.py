"""Hardening profiles: the [Service] directives croft's drop-ins put around a service.

Three profiles, from tightest to loosest:

- `strict` for services croft ships or that need no root: a dynamic user, no capabilities, no
  private user namespace escapes. `systemd-analyze security` scores these <= 2.5.
- `default` for distro daemons that start as root and drop privileges (nginx, postgresql):
  they keep the capabilities to bind low ports and change user, and nothing else.
- `relaxed` for what the others break (a daemon using JIT, raw sockets or odd system calls):
  the filesystem and kernel protections stay, the capability and system call filters go.

Every profile makes the root file system read-only (ProtectSystem=strict): a service writes
only to its declared state directories, /tmp (private) and its RuntimeDirectory.
"""

from __future__ import annotations

from typing import Literal

Profile = Literal["strict", "default", "relaxed"]
PROFILES: tuple[Profile, ...] = ("strict", "default", "relaxed")

# Protections every profile has: the "immutable root" and "transient environment" of the
# @home cloud design, and the kernel kept out of reach.
_BASE = [
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictNamespaces", "yes"),
    ("LockPersonality", "yes"),
    ("RemoveIPC", "yes"),
    ("KeyringMode", "private"),
    ("UMask", "0027"),
]

_FILTERED = [
    ("NoNewPrivileges", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("PrivateIPC", "yes"),
    ("ProtectProc", "invisible"),
    ("ProcSubset", "pid"),
    ("SystemCallArchitectures", "native"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallErrorNumber", "EPERM"),
]

_PROFILE_DIRECTIVES: dict[Profile, list[tuple[str, str]]] = {
    "strict": [
        *_BASE,
        *_FILTERED,
        ("DynamicUser", "yes"),
        ("PrivateUsers", "yes"),
        # Only what it needs to bind a port below 1024 (and nothing, with a higher port).
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("SystemCallFilter", "~@privileged @resources"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ],
    "default": [
        *_BASE,
        *_FILTERED,
        # Start as root, bind low ports, switch to the service's user, own its files.
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_CHOWN CAP_DAC_OVERRIDE"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ],
    "relaxed": [*_BASE],
}


def directives(profile: Profile) -> list[tuple[str, str]]:
    """The profile's directives, in the order a drop-in lists them."""
    return list(_PROFILE_DIRECTIVES[profile])
