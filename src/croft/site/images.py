"""Checking image recipes beyond their types: which fields apply to which kind, names, sizes."""

from __future__ import annotations

import dataclasses
import re

from croft.errors import Problem
from croft.site.model import Image, ImageConfig
from croft.site.tomlfile import Reporter

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Debian policy 5.6.1: lower case letters, digits, + - . ; at least two characters.
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_MODULE = re.compile(r"^[A-Za-z0-9_-]+$")
_SUITE = re.compile(r"^[a-z][a-z0-9-]*$")
_SIZE = re.compile(r"^(\d+)([MG])$")

# The fields each kind reads; any other field set to a non-default value is a mistake.
FIELDS = {
    "base": {"suite", "mirror", "arch", "packages", "commands", "compression"},
    "overlay": {"base", "packages", "commands", "compression", "format", "agent"},
    "initrd": {"suite", "mirror", "arch", "kernel", "modules", "compression"},
    "disk": {
        "suite",
        "mirror",
        "arch",
        "packages",
        "commands",
        "kernel",
        "modules",
        "size",
        "outputs",
        "cmdline",
    },
}
_ARTICLE = {"base": "a", "overlay": "an", "initrd": "an", "disk": "a"}
_DEFAULTS = ImageConfig(kind="base")


def image_arch(image: Image, images: dict[str, Image]) -> str:
    """The Debian architecture of an image: an overlay's is its base's."""
    if image.config.kind == "overlay" and image.config.base in images:
        return images[image.config.base].config.arch
    return image.config.arch


def kernel_package(config: ImageConfig) -> str:
    return config.kernel or f"linux-image-{config.arch}"


def size_bytes(size: str) -> int:
    match = _SIZE.match(size)
    assert match, size
    return int(match.group(1)) << (20 if match.group(2) == "M" else 30)


def check_images(images: dict[str, Image], problems: list[Problem]) -> None:
    for image in images.values():
        if not _NAME.match(image.name):
            problems.append(
                Problem(
                    image.file,
                    f"image name {image.name!r} is not valid",
                    hint="use lower-case letters, digits and '-', e.g. netboot-base.toml",
                )
            )
        _check_recipe(image.config, images, Reporter(image.file, problems))


def _check_recipe(config: ImageConfig, images: dict[str, Image], problem: Reporter) -> None:
    used = FIELDS[config.kind]
    for item in dataclasses.fields(config):
        if (
            item.name != "kind"
            and item.name not in used
            and getattr(config, item.name) != getattr(_DEFAULTS, item.name)
        ):
            problem(
                (item.name,),
                f"does not apply to {_ARTICLE[config.kind]} {config.kind} image",
                f"{_ARTICLE[config.kind]} {config.kind} image reads: {', '.join(sorted(used))}",
            )
    for index, package in enumerate(config.packages):
        if not _PACKAGE.match(package):
            problem(("packages", index), f"{package!r} is not a Debian package name")
    for index, module in enumerate(config.modules):
        if not _MODULE.match(module):
            problem(("modules", index), f"{module!r} is not a kernel module name", 'e.g. "nvme"')
    if not _SUITE.match(config.suite):
        problem(("suite",), f"{config.suite!r} is not a Debian suite", 'e.g. suite = "bookworm"')
    if not config.mirror.startswith(("http://", "https://")):
        problem(
            ("mirror",),
            f"{config.mirror!r} is not an http(s) URL",
            'e.g. mirror = "http://deb.debian.org/debian"',
        )
    if config.kernel is not None and not _PACKAGE.match(config.kernel):
        problem(
            ("kernel",),
            f"{config.kernel!r} is not a Debian package name",
            'e.g. kernel = "linux-image-amd64"',
        )
    if config.kind == "disk":
        if not _SIZE.match(config.size):
            problem(("size",), f"{config.size!r} is not a size", 'megabytes or gigabytes, e.g. size = "2G"')
        elif size_bytes(config.size) < 256 << 20:
            problem(("size",), f"{config.size} is too small for a disk image", "use at least 256M")
        if not config.outputs:
            problem(("outputs",), "names no output", 'e.g. outputs = ["raw", "tar", "btrfs"]')
    if config.kind == "overlay":
        if config.base is None:
            problem(("base",), "an overlay needs the base image it goes on", 'e.g. base = "netboot"')
        elif config.base not in images or images[config.base].config.kind != "base":
            bases = sorted(name for name, other in images.items() if other.config.kind == "base")
            declare = 'none: declare one with kind = "base"'
            problem(
                ("base",), f"no base image {config.base!r}", f"name one of: {', '.join(bases) or declare}"
            )
