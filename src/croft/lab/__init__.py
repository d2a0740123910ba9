"""The virtual lab: QEMU machines on a network namespace's bridge."""
