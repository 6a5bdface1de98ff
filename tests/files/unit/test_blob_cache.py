"""The small-file cache: least recently used out first, within its bytes, small files only."""

from __future__ import annotations

from filesvc.files.blob_cache import SmallBlobCache


def test_the_least_recently_used_go_first() -> None:
    cache = SmallBlobCache(capacity_bytes=10, max_item_bytes=4)
    cache.put("a", b"aaaa")
    cache.put("b", b"bbbb")
    assert cache.get("a") == b"aaaa"  # now b is the oldest
    cache.put("c", b"cccc")
    assert cache.get("b") is None
    assert cache.get("a") == b"aaaa"
    assert cache.get("c") == b"cccc"


def test_files_over_the_item_limit_are_not_kept() -> None:
    cache = SmallBlobCache(capacity_bytes=100, max_item_bytes=4)
    cache.put("big", b"12345")
    assert cache.get("big") is None


def test_a_cache_of_no_bytes_keeps_nothing() -> None:
    cache = SmallBlobCache(capacity_bytes=0, max_item_bytes=256 * 1024)
    cache.put("a", b"a")
    assert cache.get("a") is None
