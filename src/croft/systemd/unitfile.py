"""The one writer of the unit files and drop-ins croft generates: who made them and why, then
each section's lines in the order given (keys repeat, as ListenStream=; some run in order, as
ExecStartPre=), a blank line between sections. A section without lines is left out."""

from __future__ import annotations


def unit_file(comment: str, sections: dict[str, list[str]]) -> str:
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    body = "\n".join(
        f"[{name}]\n" + "".join(f"{line}\n" for line in lines) for name, lines in sections.items() if lines
    )
    return head + body
