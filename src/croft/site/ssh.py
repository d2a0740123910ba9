"""How croft reaches a machine over SSH, as the site says (Site.ssh_target). Apart from the
model, so that a deploy that reads its settings from the deploy view (croft.deploy.target)
never imports the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple


class SshTarget(NamedTuple):
    """Everything needed to open an SSH connection to one machine."""

    host: str
    user: str
    port: int
    key: Path | None
    options: tuple[str, ...]
    via: SshTarget | None = None
    """The bastion this connection goes through."""

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "user": self.user,
            "port": self.port,
            "key": str(self.key) if self.key is not None else None,
            "options": list(self.options),
            "via": self.via.to_json() if self.via is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SshTarget:
        return cls(
            data["host"],
            data["user"],
            data["port"],
            Path(data["key"]) if data["key"] is not None else None,
            tuple(data["options"]),
            cls.from_json(data["via"]) if data["via"] is not None else None,
        )
