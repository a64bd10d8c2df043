"""LineStream: what is written goes on a whole line (or more) at a time."""

from __future__ import annotations

from snapgraph.instruments.output import LineStream


def test_a_print_goes_on_as_one_line_and_the_rest_on_flush() -> None:
    got: list[str] = []
    stream = LineStream(got.append)
    print("a", 1, file=stream)  # text, separator, text, newline: four writes
    assert got == ["a 1\n"]
    stream.write("two\nlines\n")
    stream.write("no end yet")
    assert got == ["a 1\n", "two\nlines\n"]
    stream.flush()
    stream.flush()  # nothing left: nothing more
    assert got == ["a 1\n", "two\nlines\n", "no end yet"]
    assert stream.writable() and stream.encoding == "utf-8"
