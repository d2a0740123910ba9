"""NoCloud seeds, cloud-init's local data source: what croft serve hands a machine it
provisions, and what a VM croft runs boots with."""

from __future__ import annotations

import json
from collections.abc import Sequence


def nocloud_meta_data(instance_id: str, hostname: str, ssh_keys: Sequence[str] = ()) -> str:
    """A NoCloud seed's meta-data (for machines croft serves, and VMs croft runs)."""
    document = {"instance-id": instance_id, "local-hostname": hostname, "public-keys": list(ssh_keys)}
    return json.dumps(document, indent=2) + "\n"
