"""BlockStore contract: every adapter subclasses BlockStoreContract with a ``blocks`` fixture."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from storage.ports import BlockStore

T0 = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)


class BlockStoreContract:
    @pytest.fixture
    def blocks(self) -> BlockStore:
        raise NotImplementedError

    async def test_nobody_is_blocked_at_first(self, blocks):
        assert await blocks.between("alice", "bob") is False
        assert await blocks.list_blocked("alice", 10) == []

    async def test_a_block_is_seen_from_both_sides(self, blocks):
        await blocks.block("alice", "bob", T0)
        assert await blocks.between("alice", "bob") is True
        assert await blocks.between("bob", "alice") is True

    async def test_a_block_concerns_only_its_pair(self, blocks):
        await blocks.block("alice", "bob", T0)
        assert await blocks.between("alice", "carol") is False
        assert await blocks.between("carol", "bob") is False

    async def test_list_blocked_is_one_direction_in_id_order(self, blocks):
        for other in ("dave", "bob", "carol"):
            await blocks.block("alice", other, T0)
        await blocks.block("erin", "alice", T0)
        assert await blocks.list_blocked("alice", 10) == ["bob", "carol", "dave"]
        assert await blocks.list_blocked("bob", 10) == []

    async def test_list_blocked_honours_the_limit(self, blocks):
        for other in ("b1", "b2", "b3"):
            await blocks.block("alice", other, T0)
        assert await blocks.list_blocked("alice", 2) == ["b1", "b2"]
        assert await blocks.list_blocked("alice", 0) == []

    async def test_blocking_twice_keeps_one_block(self, blocks):
        await blocks.block("alice", "bob", T0)
        await blocks.block("alice", "bob", T0 + timedelta(minutes=1))
        assert await blocks.list_blocked("alice", 10) == ["bob"]

    async def test_concurrent_blocks_of_one_pair_keep_one_block(self, blocks):
        await asyncio.gather(*(blocks.block("alice", "bob", T0) for _ in range(10)))
        assert await blocks.list_blocked("alice", 10) == ["bob"]

    async def test_unblock_takes_effect_at_once(self, blocks):
        await blocks.block("alice", "bob", T0)
        await blocks.unblock("alice", "bob")
        assert await blocks.between("alice", "bob") is False
        assert await blocks.list_blocked("alice", 10) == []

    async def test_unblock_of_nothing_is_a_no_op(self, blocks):
        await blocks.unblock("alice", "bob")
        assert await blocks.between("alice", "bob") is False

    async def test_unblock_leaves_the_other_directions_block(self, blocks):
        await blocks.block("alice", "bob", T0)
        await blocks.block("bob", "alice", T0)
        await blocks.unblock("alice", "bob")
        assert await blocks.between("alice", "bob") is True
        assert await blocks.list_blocked("bob", 10) == ["alice"]


class TestMongoBlockStore(BlockStoreContract):
    @pytest.fixture
    def blocks(self, mongo_stores):
        return mongo_stores.blocks

    async def test_block_resent_after_a_lost_reply_keeps_one_block(self, faulty_mongo_stores, mongo_faults):
        store = faulty_mongo_stores.blocks
        await mongo_faults.lose_next_reply("update")
        await store.block("alice", "bob", T0)
        assert await store.list_blocked("alice", 10) == ["bob"]
