"""Random ids from a pool of os.urandom bytes: unique, version 4, never shared by a fork."""

from __future__ import annotations

import os
import uuid

import pytest

from filesvc import ids


def test_ids_are_unique_version_4_uuids() -> None:
    made = [uuid.UUID(ids.uuid4_hex()) for _ in range(3 * ids.POOL_BYTES // 16 + 5)]  # pools

    assert len(set(made)) == len(made)
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in made)


def test_hex_and_string_ids_are_version_4_uuids_as_the_uuid_module_writes_them() -> None:
    hexes = [ids.uuid4_hex() for _ in range(2000)]
    strings = [ids.uuid4_str() for _ in range(2000)]

    assert len(set(hexes)) == len(hexes)
    assert len(set(strings)) == len(strings)
    for made in (*hexes, *strings):
        parsed = uuid.UUID(made)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert made in (parsed.hex, str(parsed))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_draws_from_a_pool_of_its_own() -> None:
    ids.uuid4_hex()  # the parent's pool is filled
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, then gone
        os.write(write_end, ids.uuid4_hex().encode())
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 32).decode()
    os.close(read_end)
    os.waitpid(pid, 0)

    assert child != ids.uuid4_hex()  # the same bytes if the pool had been inherited
