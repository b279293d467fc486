"""No query the MongoDB adapters send on a request's path reads a whole collection on SecantusDB.

A COLLSCAN costs as much as the collection is large, and SecantusDB holds its lock meanwhile: one
such query per request is a load that grows with every user, token or event ever stored. And
SecantusDB, which the tests and a single-node raychat run on, plans far less than mongod (a
filter with a top-level $or, a findAndModify's write, a partial index on ``$type``: a scan each),
so a query mongod serves from an index may still scan here. Hence this test, on SecantusDB itself.

How: the adapters' real methods run on a populated database with SecantusDB's profiler on (level
2: every command lands in ``system.profile``). Its entries carry no ``planSummary``, so each
recorded statement's filter is put to ``explain`` afterwards. Not ``executionStats``: for an index
scan SecantusDB reports ``totalDocsExamined`` equal to ``nReturned`` whatever it read, and it
explains an update or delete as the filter ``{}``; so the plan asked is that of a find with the
statement's filter (see ``plan``).

What this does not catch: an index scan that reads far more than it returns (SecantusDB fetches
a whole index range before it sorts and limits, so ``last_seq`` reads every event of the
conversation). That needs the store's own counters; the plans here are the floor.
"""

from __future__ import annotations

import contextlib
import inspect
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Mapping

from raychat.terms import terms
from storage.errors import DuplicateEvent, DuplicateKey
from storage.mongo import MongoStores

T0 = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)   # ms precision: stores keep ms
LATER = T0 + timedelta(days=1)
COLLSCAN = "COLLSCAN"

# The adapter calls that may scan a whole collection, each with why. Keep it short: an entry
# here is a cost that grows with the collection, paid on every call.
ALLOWED: dict[str, str] = {}


def conversation(cid: str, members: list[str], kind: str = "group", at: datetime = T0) -> dict[str, Any]:
    return {"conversation_id": cid, "kind": kind, "title": "t", "members": members,
            "roles": {m: "member" for m in members}, "created_at": at, "last_seq": 0,
            "last_activity_at": at, "state_seq": 0}


WORDS = "hello world meeting lunch project deadline release budget coffee weekend".split()


def history(cid: str, members: list[str], count: int) -> list[dict[str, Any]]:
    """``count`` events as a conversation stores them: mostly messages (some with an attachment),
    and edits, reactions and membership changes among them."""
    out = []
    for seq in range(1, count + 1):
        base = {"conversation_id": cid, "seq": seq, "sender_id": members[seq % len(members)],
                "client_msg_id": None, "created_at": T0 + timedelta(seconds=seq)}
        if seq % 20 == 0:
            out.append({**base, "kind": "member_added", "user_ids": [f"new{seq}"]})
        elif seq % 13 == 0:
            out.append({**base, "kind": "edit", "target_seq": seq - 1, "body": "edited"})
        elif seq % 11 == 0:
            out.append({**base, "kind": "reaction", "target_seq": seq - 1, "emoji": "+1", "on": True})
        else:
            body = f"{WORDS[seq % len(WORDS)]} {WORDS[seq * 3 % len(WORDS)]}"
            out.append({**base, "kind": "message", "client_msg_id": f"k{seq}", "body": body,
                        "attachments": [f"m{seq}"] if seq % 10 == 1 else [], "reply_to": None,
                        "terms": terms(body)})
    return out


async def populate(stores: MongoStores) -> None:
    """A small deployment: a dozen users, direct chats and groups up to 200 members, a few hundred
    events, and uploads, tokens, devices, keys, blocks and identities for several users each."""
    users = [f"u{i}" for i in range(12)]
    for u in users:
        await stores.users.create({"user_id": u, "username": f"name-{u}", "display_name": u, "created_at": T0})
        await stores.identities.link({"issuer": "https://idp", "subject": f"sub-{u}", "user_id": u,
                                      "created_at": T0})
    convs = [conversation(f"d{i}", ["u0", f"u{i}"], "direct", T0 + timedelta(minutes=i)) for i in range(1, 8)]
    convs += [conversation("d8-9", ["u8", "u9"], "direct"),
              conversation("g3", ["u0", "u1", "u2"], at=T0 + timedelta(hours=1)),
              conversation("g200", ["u0", *(f"x{j}" for j in range(199))], at=T0 + timedelta(hours=2))]
    for c in convs:
        await stores.conversations.create(c, direct_key=":".join(c["members"]) if c["kind"] == "direct" else None)
        await stores.events.append(history(c["conversation_id"], c["members"], 150 if c["conversation_id"] == "g200" else 12))
    for m in range(30):
        await stores.media.create({"media_id": f"m{m}", "owner_id": users[m % 4], "key": f"k{m}", "filename": "a.png",
                                   "content_type": "image/png", "size": 10, "created_at": T0 + timedelta(minutes=m)})
        if m % 2:
            await stores.media.attach(f"m{m}", users[m % 4], "g200")
    for t in range(30):
        await stores.refresh_tokens.insert({"token_hash": f"h{t}", "family_id": f"f{t // 3}", "user_id": users[t % 12],
                                            "created_at": T0, "expires_at": T0 + timedelta(days=30)})
    for d in range(20):
        await stores.devices.register({"device_id": f"dev{d}", "user_id": users[d % 12], "platform": "fcm",
                                       "token": f"token-{d}-" * 10, "created_at": T0 + timedelta(seconds=d)}, 5)
    for u in users[:4]:
        await stores.keys.put_bundle(u, f"ik-{u}", f"spk-{u}", T0)
        await stores.keys.add_prekeys(u, f"ik-{u}", [{"key_id": k, "public_key": f"pk{k}"} for k in range(20)])
        for _ in range(5):
            await stores.keys.claim_prekey(u, f"ik-{u}", T0)
    for b in range(10):
        await stores.blocks.block(users[b], users[(b * 5 + 1) % 12], T0)


Call = Callable[[MongoStores], Awaitable[Any]]

# Every adapter method, on the paths requests take (a retry's lookup of its own write included),
# as ``store.method[ what]``. test_every_adapter_method_is_checked keeps this list whole.
CALLS: list[tuple[str, Call]] = [
    ("users.create", lambda s: s.users.create({"user_id": "n1", "username": "new", "created_at": LATER})),
    ("users.create of a taken id", lambda s: s.users.create({"user_id": "u1", "username": "other", "created_at": LATER})),
    ("users.by_username", lambda s: s.users.by_username("name-u5")),
    ("users.by_id", lambda s: s.users.by_id("u5")),
    ("users.update_profile", lambda s: s.users.update_profile("u5", {"display_name": "Five"})),
    ("identities.link", lambda s: s.identities.link({"issuer": "https://idp", "subject": "sub-u3", "user_id": "u3",
                                                     "created_at": LATER})),
    ("identities.find", lambda s: s.identities.find("https://idp", "sub-u4")),
    ("conversations.create", lambda s: s.conversations.create(conversation("g-new", ["u1", "u2"]))),
    ("conversations.create of a taken direct key",
     lambda s: s.conversations.create(conversation("d-again", ["u0", "u3"], "direct"), direct_key="u0:u3")),
    ("conversations.create of a taken id", lambda s: s.conversations.create(conversation("g3", ["u5"]))),
    ("conversations.get", lambda s: s.conversations.get("g200")),
    ("conversations.list_for_user", lambda s: s.conversations.list_for_user("u0", None, 5)),
    ("conversations.list_for_user before", lambda s: s.conversations.list_for_user("u0", T0 + timedelta(minutes=5), 3)),
    ("conversations.list_for_user before an id",
     lambda s: s.conversations.list_for_user("u0", T0 + timedelta(minutes=5), 3, before_id="d5")),
    ("conversations.ids_for_member", lambda s: s.conversations.ids_for_member("u0", 100)),
    ("conversations.direct_peers", lambda s: s.conversations.direct_peers("u0")),
    ("conversations.save_progress", lambda s: s.conversations.save_progress(
        "g200", {"state_seq": 3, "last_seq": 3, "message_count": 3, "last_activity_at": LATER}, {"u0": (3, 3)})),
    ("conversations.save_progress not in full", lambda s: s.conversations.save_progress(
        "g200", {"state_seq": 4, "last_seq": 4, "message_count": 4, "last_activity_at": LATER}, {"u0": (4, 4)},
        full=False)),
    ("conversations.save_progress behind a newer one", lambda s: s.conversations.save_progress(
        "g200", {"state_seq": 2, "last_seq": 2, "message_count": 2}, {"u1": (2, 2)}, full=False)),
    ("conversations.set_reads", lambda s: s.conversations.set_reads("g200", {"x1": (4, 4)})),
    ("events.append", lambda s: s.events.append(history("g3", ["u0", "u1", "u2"], 14)[12:])),
    ("events.append of a taken client_msg_id", lambda s: s.events.append(
        [{**history("g3", ["u0", "u1", "u2"], 1)[0], "seq": 15}])),
    ("events.last_seq", lambda s: s.events.last_seq("g200")),
    ("events.read_after", lambda s: s.events.read_after("g200", 100, 20)),
    ("events.read_before", lambda s: s.events.read_before("g200", 100, 20)),
    ("events.read_before the end", lambda s: s.events.read_before("g200", None, 20)),
    ("events.messages_before", lambda s: s.events.messages_before("g200", 100, 20)),
    ("events.messages_before the end", lambda s: s.events.messages_before("g200", None, 20)),
    ("events.find_client_msg", lambda s: s.events.find_client_msg("g200", "x0", "k1")),
    ("events.get", lambda s: s.events.get("g200", 41)),
    ("events.count_messages_after", lambda s: s.events.count_messages_after("g200", 120)),
    ("events.last_membership_change", lambda s: s.events.last_membership_change("g200", "new40", 130)),
    ("events.attached_elsewhere", lambda s: s.events.attached_elsewhere("g200", "m21", 21)),
    ("events.edit_message", lambda s: s.events.edit_message("g200", 42, "lunch at noon", LATER, ["lunch", "noon"])),
    ("events.set_reaction", lambda s: s.events.set_reaction("g200", 42, "u0", "+1", True)),
    ("events.erase_message", lambda s: s.events.erase_message("g200", 43)),
    ("events.search", lambda s: s.events.search(["g200", "d1", "g3"], ["meeting", "lunch"], None, 3)),
    ("media.create", lambda s: s.media.create({"media_id": "m-new", "owner_id": "u1", "key": "k", "filename": "a",
                                                "content_type": "image/png", "size": 1, "created_at": LATER})),
    ("media.get", lambda s: s.media.get("m3")),
    ("media.attach", lambda s: s.media.attach("m4", "u0", "g3")),
    ("media.release", lambda s: s.media.release("m4", "g3")),
    ("media.pending", lambda s: s.media.pending("u2")),
    ("media.claim_unattached", lambda s: s.media.claim_unattached(T0 + timedelta(minutes=20), 5)),
    ("media.delete", lambda s: s.media.delete("m6")),
    ("refresh_tokens.insert", lambda s: s.refresh_tokens.insert(
        {"token_hash": "h-new", "family_id": "f-new", "user_id": "u1", "created_at": T0, "expires_at": LATER})),
    ("refresh_tokens.insert again", lambda s: s.refresh_tokens.insert(
        {"token_hash": "h-new", "family_id": "f-new", "user_id": "u1", "created_at": T0, "expires_at": LATER})),
    ("refresh_tokens.get", lambda s: s.refresh_tokens.get("h4")),
    ("refresh_tokens.spend", lambda s: s.refresh_tokens.spend("h4", "h4-next", T0 + timedelta(days=1))),
    ("refresh_tokens.spend resent", lambda s: s.refresh_tokens.spend("h4", "h4-next", T0 + timedelta(days=1))),
    ("refresh_tokens.revoke_family", lambda s: s.refresh_tokens.revoke_family("f2")),
    ("devices.register", lambda s: s.devices.register({"device_id": "dev-new", "user_id": "u1", "platform": "fcm",
                                                       "token": "fresh" * 20, "created_at": LATER}, 2)),
    ("devices.register of a known token", lambda s: s.devices.register(
        {"device_id": "dev-other", "user_id": "u3", "platform": "fcm", "token": "token-3-" * 10, "created_at": LATER}, 5)),
    ("devices.register of another user's token", lambda s: s.devices.register(
        {"device_id": "dev-moved", "user_id": "u4", "platform": "fcm", "token": "token-5-" * 10, "created_at": LATER}, 5)),
    ("devices.list_for_user", lambda s: s.devices.list_for_user("u2")),
    ("devices.list_for_users", lambda s: s.devices.list_for_users(["u1", "u2", "u3"])),
    ("devices.remove", lambda s: s.devices.remove("dev7", "u7")),
    ("devices.remove_token", lambda s: s.devices.remove_token("fcm", "token-8-" * 10)),
    ("keys.put_bundle", lambda s: s.keys.put_bundle("u2", "ik-u2", "spk-2b", LATER)),
    ("keys.get_bundle", lambda s: s.keys.get_bundle("u2")),
    ("keys.add_prekeys", lambda s: s.keys.add_prekeys("u2", "ik-u2", [{"key_id": 19, "public_key": "p"},
                                                                      {"key_id": 20, "public_key": "p"}])),
    ("keys.claim_prekey", lambda s: s.keys.claim_prekey("u2", "ik-u2", LATER)),
    ("keys.count_prekeys", lambda s: s.keys.count_prekeys("u2", "ik-u2")),
    ("blocks.block", lambda s: s.blocks.block("u1", "u11", LATER)),
    ("blocks.list_blocked", lambda s: s.blocks.list_blocked("u1", 1000)),
    ("blocks.between", lambda s: s.blocks.between("u1", "u6")),
    ("blocks.unblock", lambda s: s.blocks.unblock("u1", "u11")),
]


def statements(command: Mapping[str, Any]) -> list[tuple[dict[str, Any], Any] | str]:
    """What SecantusDB looks up for one profiled command: a (filter, sort) per lookup, or COLLSCAN
    where it scans whatever the filter. Its own code decides these (secantus/commands.py)."""
    name = next(iter(command))
    if name == "insert":
        return []
    if name == "find":
        return [(command.get("filter") or {}, command.get("sort"))]
    if name == "aggregate":
        # Only a first stage that is exactly a $match is lifted into the lookup; without one
        # the pipeline starts from every document.
        first = (command.get("pipeline") or [{}])[0]
        return [(dict(first["$match"]), None) if list(first) == ["$match"] else COLLSCAN]
    if name == "count":
        return [COLLSCAN]                  # counts with a filter by reading every document
    if name == "update":
        return [(u["q"], None) for u in command["updates"]]
    if name == "delete":
        return [(d["q"], None) for d in command["deletes"]]
    if name == "findAndModify":
        # It finds the document, then writes it through {_id: <the one found>, $and: [query]}:
        # explained as it is, the write's filter shows the scan.
        query = command.get("query") or {}
        write = {"_id": "any", "$and": [query]} if query else {"_id": "any"}
        return [(query, command.get("sort")), (write, None)]
    raise AssertionError(f"no rule for what SecantusDB reads for {name!r}: add one to statements()")


def _index_name(stage: Mapping[str, Any]) -> str:
    while stage:
        if stage.get("stage") == "IXSCAN":
            return stage["indexName"]
        stage = stage.get("inputStage") or {}
    return COLLSCAN


async def plan(db, collection: str, query: dict[str, Any], sort: Any) -> str:
    """The index SecantusDB reads ``query`` from, or COLLSCAN.

    ``explain`` answers for the whole filter but leaves out the planner's last resort
    (secantus/storage.py, ``_try_index_id_keys``): when no index serves the whole filter and
    none of its top-level keys is an operator ($or, $and...), it reads the first clause, in the
    filter's order, that an index serves alone, and filters the rest. So a filter explained as a
    COLLSCAN is asked again, clause by clause."""
    async def explained(q: dict[str, Any], s: Any) -> str:
        find = {"find": collection, "filter": q, **({"sort": s} if s else {})}
        reply = await db.command("explain", find, verbosity="queryPlanner")
        return _index_name(reply["queryPlanner"]["winningPlan"])

    if not query:
        return COLLSCAN                 # every document, even when walked in an index's order
    found = await explained(query, sort)
    if found != COLLSCAN or len(query) < 2 or any(k.startswith("$") for k in query):
        return found
    for field, clause in query.items():
        found = await explained({field: clause}, None)
        if found != COLLSCAN:
            return found
    return COLLSCAN


async def profiled_calls(stores: MongoStores) -> dict[str, list[dict[str, Any]]]:
    """Each of CALLS run in turn, with the commands it sent (system.profile entries, in order)."""
    db = stores.users._users.database
    profile = db["system.profile"]              # reads of it are never profiled themselves
    await db.command("profile", 2)
    sent: dict[str, list[dict[str, Any]]] = {}
    seen = 0
    try:
        for label, call in CALLS:
            # Some calls are about the conflict: its lookup is on a request's path too.
            with contextlib.suppress(DuplicateKey, DuplicateEvent):
                await call(stores)
            entries = await profile.find({}, {"command": 1, "ns": 1}).skip(seen).to_list()
            seen += len(entries)
            sent[label] = entries
    finally:
        await db.command("profile", 0)
    return sent


async def test_every_adapter_method_is_checked(mongo_stores):
    # A new adapter method gets a line in CALLS, or this test fails: its queries are checked too.
    covered = {label.split()[0] for label, _ in CALLS}
    methods = {f"{name}.{method}"
               for name, store in vars(mongo_stores).items() if type(store).__module__.startswith("storage.mongo_")
               for method, _ in inspect.getmembers(type(store), inspect.iscoroutinefunction)
               if not method.startswith("_") and method != "ensure_indexes"}
    assert methods - covered == set()
    assert covered - methods == set()


async def test_no_adapter_call_scans_a_whole_collection(mongo_stores):
    await populate(mongo_stores)
    sent = await profiled_calls(mongo_stores)
    db = mongo_stores.users._users.database
    # Every call reached the server, so the profiler saw what each one sent.
    assert [label for label, entries in sent.items() if not entries] == []
    scans: dict[str, list[str]] = {}
    for label, entries in sent.items():
        for entry in entries:
            collection = entry["ns"].split(".", 1)[1]
            for statement in statements(entry["command"]):
                if statement == COLLSCAN:
                    found, shown = COLLSCAN, entry["command"]
                else:
                    query, sort = statement
                    found, shown = await plan(db, collection, query, sort), query
                if found == COLLSCAN:
                    name = next(iter(entry["command"]))
                    scans.setdefault(label, []).append(f"{name} {collection} {shown}")
    assert {label: found for label, found in scans.items() if label not in ALLOWED} == {}
    # An exception that no longer scans leaves the list.
    assert sorted(set(ALLOWED) - set(scans)) == []
