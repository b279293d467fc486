"""DeviceStore contract: every adapter subclasses DeviceStoreContract with a ``devices`` fixture."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from storage.ports import DeviceStore

T0 = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
FCM = "fJ3kAPA91b" * 16


def device(device_id, user_id, token=FCM, platform="fcm", at=T0):
    return {"device_id": device_id, "user_id": user_id, "platform": platform, "token": token, "created_at": at}


class DeviceStoreContract:
    @pytest.fixture
    def devices(self) -> DeviceStore:
        raise NotImplementedError

    async def test_a_registered_device_is_listed_as_stored(self, devices):
        stored = await devices.register(device("d1", "alice"), 10)
        assert stored == device("d1", "alice")
        assert await devices.list_for_user("alice") == [stored]

    async def test_registering_the_same_token_again_answers_the_first_device(self, devices):
        first = await devices.register(device("d1", "alice"), 10)
        again = await devices.register(device("d2", "alice", at=T0 + timedelta(days=1)), 10)
        assert again == first
        assert [d["device_id"] for d in await devices.list_for_user("alice")] == ["d1"]

    async def test_one_token_per_platform(self, devices):
        await devices.register(device("d1", "alice", token="ab" * 32, platform="apns"), 10)
        await devices.register(device("d2", "alice", token="ab" * 32, platform="fcm"), 10)
        assert len(await devices.list_for_user("alice")) == 2

    async def test_a_token_registered_by_another_user_moves_to_them(self, devices):
        await devices.register(device("d1", "alice"), 10)
        moved = await devices.register(device("d2", "bob"), 10)
        assert moved["device_id"] == "d2" and moved["user_id"] == "bob"
        assert await devices.list_for_user("alice") == []
        assert [d["device_id"] for d in await devices.list_for_user("bob")] == ["d2"]

    async def test_a_user_keeps_at_most_the_newest_n_devices(self, devices):
        for i in range(4):
            await devices.register(device(f"d{i}", "alice", token=f"{FCM}{i}", at=T0 + timedelta(minutes=i)), 3)
        assert [d["device_id"] for d in await devices.list_for_user("alice")] == ["d1", "d2", "d3"]

    async def test_concurrent_registrations_of_one_token_end_with_one_device(self, devices):
        results = await asyncio.gather(*(devices.register(device(f"d{i}", "alice"), 10) for i in range(8)))
        assert len({r["device_id"] for r in results}) == 1
        assert len(await devices.list_for_user("alice")) == 1

    async def test_list_for_users_reads_many_users_at_once(self, devices):
        await devices.register(device("d1", "alice"), 10)
        await devices.register(device("d2", "bob", token=FCM + "b"), 10)
        await devices.register(device("d3", "carol", token=FCM + "c"), 10)
        found = await devices.list_for_users(["alice", "bob", "nobody"])
        assert sorted(d["device_id"] for d in found) == ["d1", "d2"]
        assert await devices.list_for_users([]) == []

    async def test_remove_only_ones_own_device(self, devices):
        await devices.register(device("d1", "alice"), 10)
        assert await devices.remove("d1", "bob") is False
        assert await devices.remove("d1", "alice") is True
        assert await devices.remove("d1", "alice") is False
        assert await devices.list_for_user("alice") == []

    async def test_remove_token_removes_whoever_has_it(self, devices):
        await devices.register(device("d1", "alice"), 10)
        assert await devices.remove_token("apns", FCM) == 0
        assert await devices.remove_token("fcm", FCM) == 1
        assert await devices.list_for_users(["alice"]) == []

    async def test_long_tokens_fit(self, devices):
        url = "https://hooks.example.com/" + "p" * 2000
        stored = await devices.register(device("d1", "alice", token=url, platform="webhook"), 10)
        assert stored["token"] == url
        assert await devices.remove_token("webhook", url) == 1


class TestMongoDeviceStore(DeviceStoreContract):
    @pytest.fixture
    def devices(self, mongo_stores):
        return mongo_stores.devices

    async def test_register_resent_after_a_lost_reply_keeps_one_device(self, faulty_mongo_stores, mongo_faults):
        store = faulty_mongo_stores.devices
        await mongo_faults.lose_next_reply("insert")
        stored = await store.register(device("d1", "alice"), 10)
        assert stored == device("d1", "alice")
        assert [d["device_id"] for d in await store.list_for_user("alice")] == ["d1"]
