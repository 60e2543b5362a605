"""errors.one_line: how every exception is written on one line."""

from __future__ import annotations

from frugalvision.errors import ConfigError, one_line


def test_one_line_squeezes_whitespace_and_falls_back_to_the_type_name():
    assert one_line(ConfigError("bad  value\n  in line 3\n")) == "bad value in line 3"
    assert one_line(RuntimeError()) == "RuntimeError"
    assert one_line(RuntimeError("   \n ")) == "RuntimeError"
    assert one_line(OSError("no\ttab"), with_type=True) == "OSError: no tab"
    assert one_line(KeyError(), with_type=True) == "KeyError"


def test_one_line_cuts_long_messages_at_the_limit():
    text = one_line(ValueError("x" * 500))
    assert text == "x" * 297 + "..." and len(text) == 300
    assert one_line(ValueError("abcdefghij"), limit=8) == "abcde..."
    assert one_line(ValueError("abcdefgh"), limit=8) == "abcdefgh"
    assert one_line(ValueError("x" * 500), limit=None) == "x" * 500
