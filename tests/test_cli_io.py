"""Input splitting, output flattening, whole-line writes and the Ctrl-C deferral of `cmsd_cli.cli.io`."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import pytest

from cmsd_cli.cli.errors import UserInputError
from cmsd_cli.cli.io import LineWriter, check_output_path, flatten, open_inputs, sigint_deferred


def texts(inputs) -> list[str]:
    return [line.text for line in inputs]


def test_file_lines_keep_empty_lines_and_order(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"first\n\n  \nfourth\r\nlast without newline")

    inputs = open_inputs([str(path)])

    assert inputs.total == 5
    assert texts(inputs) == ["first", "", "  ", "fourth", "last without newline"]


def test_line_count_matches_wc_for_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"a\nb\n")

    assert texts(open_inputs([str(path)])) == ["a", "b"]


def test_empty_file_has_no_lines(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")

    inputs = open_inputs([str(path)])

    assert inputs.total == 0
    assert texts(inputs) == []


def test_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffHallo\nWelt\n".encode("utf-8"))

    assert texts(open_inputs([str(path)])) == ["Hallo", "Welt"]


def test_lone_carriage_return_does_not_split(tmp_path: Path) -> None:
    path = tmp_path / "cr.txt"
    path.write_bytes(b"one\rstill one\n")

    assert texts(open_inputs([str(path)])) == ["one\rstill one"]


def test_files_and_stdin_numbered_in_order(tmp_path: Path) -> None:
    first = tmp_path / "a.txt"
    first.write_text("a1\na2\n")
    stdin = io.BytesIO(b"s1\ns2\n")

    lines = list(open_inputs([str(first), "-"], stdin=stdin))

    assert [line.number for line in lines] == [1, 2, 3, 4]
    assert [line.text for line in lines] == ["a1", "a2", "s1", "s2"]
    assert [line.source for line in lines] == [str(first), str(first), "standard input", "standard input"]
    assert [line.source_line for line in lines] == [1, 2, 1, 2]


def test_stream_input_has_unknown_total() -> None:
    inputs = open_inputs([], stdin=io.BytesIO(b"x\ny\n"))

    assert inputs.total is None
    assert texts(inputs) == ["x", "y"]


def test_missing_file_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="Input file '.*nope.txt' not found"):
        open_inputs([str(tmp_path / "nope.txt")])


def test_directory_input_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="is a directory"):
        open_inputs([str(tmp_path)])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_unreadable_file_is_user_error(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("x\n")
    path.chmod(0)

    with pytest.raises(UserInputError, match="could not be read \\(permission denied\\)"):
        open_inputs([str(path)])


def test_invalid_utf8_names_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"ok\nGr\xfc\xdfe\n")

    with pytest.raises(UserInputError, match="Line 2 of .*latin1.txt is not valid UTF-8 \\(byte 3\\)"):
        open_inputs([str(path)])


def test_stdin_twice_is_user_error() -> None:
    with pytest.raises(UserInputError, match="at most once"):
        open_inputs(["-", "-"], stdin=io.BytesIO(b""))


def test_flatten_joins_every_line_break() -> None:
    assert flatten("Der Hund.\nDie Katze.") == "Der Hund. Die Katze."
    assert flatten(" a \r\n\r\n b\u2028c\x85d ") == "a b c d"
    assert flatten("no breaks") == "no breaks"
    assert flatten("\n") == ""


def test_output_in_missing_folder_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="Output folder .* not found"):
        check_output_path(tmp_path / "missing" / "out.txt")


def test_output_directory_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="is a directory"):
        check_output_path(tmp_path)


def test_writer_opens_file_at_first_line(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old contents\n")
    writer = LineWriter(path)

    assert path.read_text() == "old contents\n"

    writer.write_line("eins")
    assert path.read_text() == "eins\n"
    writer.write_line("zwei")
    writer.close()

    assert path.read_text() == "eins\nzwei\n"
    assert writer.lines_written == 2


def test_writer_sink_receives_lines() -> None:
    received: list[str] = []
    writer = LineWriter(sink=received.append)

    writer.write_line("eins")

    assert received == ["eins"]
    assert writer.lines_written == 1


def test_sigint_deferred_until_block_ends() -> None:
    steps: list[str] = []

    with pytest.raises(KeyboardInterrupt):
        with sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("block finished")

    assert steps == ["block finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_writer_finishes_line_when_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.txt"
    writer = LineWriter(path)
    open_stream = LineWriter._stream

    def stream_then_ctrl_c(self: LineWriter):
        stream = open_stream(self)
        os.kill(os.getpid(), signal.SIGINT)
        return stream

    monkeypatch.setattr(LineWriter, "_stream", stream_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        writer.write_line("a whole line")
    writer.close()

    assert path.read_text() == "a whole line\n"
    assert writer.lines_written == 1
