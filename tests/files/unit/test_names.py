from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

import pytest

from filesvc.files.names import (
    DEFAULT_NAME,
    MAX_NAME_CHARS,
    clean_name,
    content_disposition,
    resolve_content_type,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("a\x00b.txt", "ab.txt"),
        ("a\r\nb.txt", "ab.txt"),
        ("a\tb\x1b[31m.txt", "ab[31m.txt"),
        ("a\x7fb\x85c.txt", "abc.txt"),  # DEL and NEL
        ("a\u202eb.txt", "ab.txt"),  # right-to-left override (Cf)
        ("a\u2028b\u2029c", "abc"),  # line and paragraph separators
        ("  spaced name.txt  ", "spaced name.txt"),
        ("../../etc/passwd", "../../etc/passwd"),  # display text, never a path
        ("C:\\Windows\\win.ini", "C:\\Windows\\win.ini"),
        ("отчёт 2024.pdf", "отчёт 2024.pdf"),
    ],
)
def test_clean_name(raw: str, expected: str) -> None:
    assert clean_name(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "\x00\r\n", "\u200b\u200e"])
def test_clean_name_empty_becomes_default(raw: str) -> None:
    assert clean_name(raw) == DEFAULT_NAME


def test_clean_name_normalizes_to_nfc() -> None:
    decomposed = "cafe\u0301.txt"
    cleaned = clean_name(decomposed)
    assert cleaned == "caf\u00e9.txt"
    assert unicodedata.is_normalized("NFC", cleaned)


def test_clean_name_long_name_keeps_extension() -> None:
    cleaned = clean_name("a" * 4000 + ".txt")
    assert len(cleaned) == MAX_NAME_CHARS
    assert cleaned.endswith(".txt")
    assert cleaned == "a" * (MAX_NAME_CHARS - 4) + ".txt"


def test_clean_name_long_name_with_long_extension_is_cut() -> None:
    cleaned = clean_name("a.b" + "c" * 4000)
    assert len(cleaned) == MAX_NAME_CHARS
    assert cleaned.startswith("a.bccc")


def test_clean_name_long_name_without_extension_is_cut() -> None:
    assert clean_name("x" * 4000) == "x" * MAX_NAME_CHARS


def test_clean_name_length_is_counted_after_dropping_control_chars() -> None:
    assert clean_name("\x00" * 1000 + "a.txt") == "a.txt"


@pytest.mark.parametrize(
    ("declared", "name", "expected"),
    [
        ("image/png", "x.bin", "image/png"),  # declared wins over the name
        ("IMAGE/PNG", "x", "image/png"),
        ("text/plain; charset=utf-8", "x.bin", "text/plain"),
        ("  application/json ;x=y", "x", "application/json"),
        ("application/vnd.api+json", "x", "application/vnd.api+json"),
        (None, "photo.png", "image/png"),
        ("", "photo.png", "image/png"),
        ("application/octet-stream", "photo.png", "image/png"),
        ("binary/octet-stream", "doc.pdf", "application/pdf"),
        ("application/octet-stream; x=y", "doc.pdf", "application/pdf"),
        (None, "no-extension", "application/octet-stream"),
        ("", "weird.zzzzqq", "application/octet-stream"),
    ],
)
def test_resolve_content_type(declared: str | None, name: str, expected: str) -> None:
    assert resolve_content_type(declared, name) == expected


@pytest.mark.parametrize(
    "declared",
    [
        "text/html\r\nX: y",
        "text/html\nX-Injected: 1",
        "text",
        "text/",
        "/html",
        "text/html/x",
        "text html",
        "text/<script>",
        "a/" + "b" * 300,
        # Header values arrive decoded as Latin-1; a type must still be ASCII tokens.
        "text/htmlé",
    ],
)
def test_resolve_content_type_rejects_junk(declared: str) -> None:
    resolved = resolve_content_type(declared, "notes.txt")
    assert resolved == "text/plain"


@pytest.mark.parametrize(
    "name",
    [
        "plain.txt",
        'a"\r\nX: y',
        'quote"back\\slash.txt',
        "отчёт 2024.pdf",
        "日本語.txt",
        "emoji 😀.png",
        "tab\there",
        "percent%20and;semicolon,comma.txt",
        "\x00\x7f",
    ],
)
def test_content_disposition(name: str) -> None:
    value = content_disposition("attachment", name)
    assert "\r" not in value
    assert "\n" not in value
    assert value.isascii()
    match = re.fullmatch(r'attachment; filename="([^"]*)"; filename\*=UTF-8\'\'(\S*)', value)
    assert match is not None, value
    fallback, encoded = match.groups()
    assert "\\" not in fallback
    assert all(0x20 <= ord(ch) < 0x7F for ch in fallback)
    assert len(fallback) == len(name)
    # RFC 5987 value-chars: attr-chars and pct-encoded octets only.
    assert re.fullmatch(r"(?:[A-Za-z0-9!#$&+.^_`|~-]|%[0-9A-F]{2})*", encoded), encoded
    assert unquote(encoded, encoding="utf-8", errors="strict") == name


def test_content_disposition_keeps_ascii_name_readable() -> None:
    assert content_disposition("inline", "report 1.pdf") == (
        "inline; filename=\"report 1.pdf\"; filename*=UTF-8''report%201.pdf"
    )


def test_content_disposition_header_injection_stays_one_line() -> None:
    value = content_disposition("attachment", 'a"\r\nX: y')
    assert value.splitlines() == [value]
    assert value.startswith('attachment; filename="a___X: y"; ')
