"""croft.run: the one way croft runs a program."""

from __future__ import annotations

from typing import IO

from croft.run import run_binary, run_streaming


def test_a_command_that_stops_reading_is_judged_by_its_exit_code_not_by_its_writer() -> None:
    """A deploy's ssh that fails (a refused key) stops reading the files tar writes into it:
    what croft reports is ssh's failure, not tar's death by SIGPIPE."""

    def write(stream: IO[bytes]) -> None:
        run_binary(["head", "-c", "50000000", "/dev/zero"], stdout=stream)

    result = run_streaming(["sh", "-c", "echo refused >&2; exit 255"], write, timeout=30)
    assert result.returncode == 255
    assert result.stderr.strip() == "refused"
