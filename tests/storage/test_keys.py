"""New storage keys: unique, UUID4-shaped, and in runs that share a fan-out directory."""

from __future__ import annotations

from pathlib import Path

from filesvc.storage.base import validate_key
from filesvc.storage.keys import PREFIX_DIGITS, RUN_LENGTH, KeyRuns, new_storage_key
from filesvc.storage.local import TMP_DIR_NAME, LocalStorage


def test_keys_are_unique_and_shaped_as_uuid4_hex() -> None:
    keys = [new_storage_key() for _ in range(2 * RUN_LENGTH + 7)]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert validate_key(key) == key
        assert set(key) <= set("0123456789abcdef")
        assert len(key) == 32
        assert key[12] == "4"  # version and variant, as in uuid4().hex
        assert key[16] in "89ab"


def test_a_run_shares_its_prefix_and_each_run_draws_its_own() -> None:
    runs = KeyRuns(run_length=4)
    keys = [runs.new_key() for _ in range(4 * 12)]
    prefixes = [
        {key[:PREFIX_DIGITS] for key in keys[start : start + 4]} for start in range(0, 48, 4)
    ]
    assert all(len(run) == 1 for run in prefixes)
    # Twelve draws of 65,536 prefixes: all equal by chance once in 65,536^11.
    assert len(set().union(*prefixes)) > 1
    assert len({key[PREFIX_DIGITS:] for key in keys}) == len(keys)


async def test_a_young_store_makes_a_directory_per_run_not_per_upload(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    keys = []
    for index in range(40):
        writer = await storage.open_writer(new_storage_key())
        await writer.write(b"blob %d" % index)
        await writer.commit()
        keys.append(writer.key)
    leaves = [
        leaf for top in storage.root.iterdir() if top.name != TMP_DIR_NAME for leaf in top.iterdir()
    ]
    # One run, or the end of one and the start of the next (wholly random keys: ~40).
    assert 1 <= len(leaves) <= 2
    assert sorted([meta.key async for meta in storage.list()]) == sorted(keys)
    for index, key in enumerate(keys):
        assert storage.local_path(key).read_bytes() == b"blob %d" % index
