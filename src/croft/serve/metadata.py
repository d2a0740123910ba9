"""Per-machine metadata in the shapes cloud-init and friends read: EC2 (/latest/...) and NoCloud
(/nocloud/meta-data, user-data, vendor-data, network-config)."""

from __future__ import annotations

import ipaddress
import json

from croft.nocloud import nocloud_meta_data
from croft.serve.inventory import Known


def ec2(known: Known, path: str) -> str | None:
    """The document at /latest/meta-data/PATH, or None when there is none."""
    metadata = known.hardware.metadata
    keys = {
        "instance-id": known.machine.name,
        "hostname": known.hostname,
        "local-hostname": known.hostname,
        "local-ipv4": known.ip or "",
        "mac": known.interface.mac.lower(),
    }
    path = path.strip("/")
    if path == "":
        return "\n".join([*keys, "public-keys/", "tags/"]) + "\n"
    if path in keys:
        return keys[path]
    if path == "public-keys":
        return "".join(f"{index}=croft-{index}\n" for index in range(len(metadata.ssh_keys)))
    parts = path.split("/")
    # isascii: "²".isdigit() is true, and int() refuses it.
    if parts[0] == "public-keys" and len(parts) >= 2 and parts[1].isascii() and parts[1].isdigit():
        index = int(parts[1])
        if index >= len(metadata.ssh_keys):
            return None
        return (
            "openssh-key\n"
            if len(parts) == 2
            else metadata.ssh_keys[index]
            if parts[2:] == ["openssh-key"]
            else None
        )
    if parts[0] == "tags":
        if len(parts) == 1 or parts[1:] == ["instance"]:
            return "".join(f"{key}\n" for key in metadata.tags)
        if len(parts) == 3 and parts[1] == "instance":
            return metadata.tags.get(parts[2])
    return None


def user_data(known: Known) -> str | None:
    return known.hardware.metadata.user_data


def nocloud(known: Known, name: str) -> str | None:
    """/nocloud/NAME: the files of a NoCloud seed (JSON is YAML, so no YAML writer is needed)."""
    metadata = known.hardware.metadata
    if name == "meta-data":
        return nocloud_meta_data(known.machine.name, known.hostname, metadata.ssh_keys)
    if name == "user-data":
        return metadata.user_data if metadata.user_data is not None else "#cloud-config\n{}\n"
    if name == "vendor-data":
        return ""
    if name == "network-config":
        return json.dumps(network_config(known), indent=2) + "\n"
    return None


def network_config(known: Known) -> dict[str, object]:
    """Network config version 2: each interface by MAC, static when it has an address."""
    ethernets: dict[str, object] = {}
    for index, interface in enumerate(known.hardware.interfaces):
        entry: dict[str, object] = {"match": {"macaddress": interface.mac.lower()}, "set-name": f"eth{index}"}
        if interface.ip:
            entry["addresses"] = [str(ipaddress.ip_interface(interface.ip))]
            if interface.gateway:
                entry["routes"] = [{"to": "default", "via": interface.gateway}]
            if interface.dns:
                entry["nameservers"] = {"addresses": list(interface.dns)}
        else:
            entry["dhcp4"] = True
        ethernets[f"eth{index}"] = entry
    return {"version": 2, "ethernets": ethernets}
