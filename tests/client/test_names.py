from __future__ import annotations

import pytest

from filesvc.client.names import MAX_NAME_BYTES, safe_filename


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        (".bashrc", "bashrc"),
        ("..", "fallback"),
        ("", "fallback"),
        ("a\x00b\r\nc.txt", "abc.txt"),
        ('what?<is>:this|"*.txt', "what__is__this___.txt"),
        ("trailing. ", "trailing"),
        ("café.txt", "café.txt"),
    ],
)
def test_names_from_the_server_are_made_safe(name: str, safe: str) -> None:
    assert safe_filename(name, "fallback") == safe


def test_long_names_keep_their_extension_within_the_limit() -> None:
    name = safe_filename("é" * 300 + ".tar.gz", "x")
    assert name.endswith(".gz")
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
