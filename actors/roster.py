"""Who is in a conversation and what each may do: the pure rules of membership.

Roles: owner, admin, member. Owners and admins add members and rename; owners
and admins remove members (an admin cannot remove an owner or another admin);
anyone may leave; only an owner changes roles, and making someone else owner
transfers ownership (the old owner becomes admin). A group never has no owner:
when the last owner leaves, the oldest admin is promoted, else the oldest member.
Direct conversations have exactly their two members, forever.
Members are kept in join order, which is what "oldest" means.
"""

from __future__ import annotations

from raychat.errors import Forbidden, Invalid, NotFound

ROLES = ("owner", "admin", "member")


class Roster:
    __slots__ = ("kind", "roles")

    def __init__(self, kind: str, members: list[str], roles: dict[str, str]):
        self.kind = kind
        # dicts keep insertion order: join order, oldest first.
        self.roles: dict[str, str] = {u: roles.get(u, "member") for u in members}

    def __contains__(self, user_id: str) -> bool:
        return user_id in self.roles

    def __len__(self) -> int:
        return len(self.roles)

    @property
    def members(self) -> list[str]:
        return list(self.roles)

    def role(self, user_id: str) -> str | None:
        return self.roles.get(user_id)

    def _group_only(self) -> None:
        if self.kind != "group":
            raise Invalid("kind: a direct conversation's members and title never change")

    def _require(self, actor: str, *allowed: str) -> None:
        role = self.roles.get(actor)
        if role is None:
            raise Forbidden("not a member of this conversation")
        if role not in allowed:
            raise Forbidden(f"needs role {' or '.join(allowed)}")

    # ---- checks: raise, or return what would change; nothing is applied here ---------------
    def check_rename(self, actor: str) -> None:
        self._group_only()
        self._require(actor, "owner", "admin")

    def check_add(self, actor: str, user_ids: list[str], limit: int) -> list[str]:
        self._group_only()
        self._require(actor, "owner", "admin")
        new = [u for u in dict.fromkeys(user_ids) if u not in self.roles]
        if len(self.roles) + len(new) > limit:
            raise Invalid(f"user_ids: a group has at most {limit} members")
        return new

    def check_remove(self, actor: str, target: str) -> list[tuple[str, str]]:
        """Role changes the removal brings (promotions), in order."""
        self._group_only()
        if target not in self.roles:
            raise NotFound("no such member")
        if actor != target:
            self._require(actor, "owner", "admin")
            if self.roles[actor] == "admin" and self.roles[target] != "member":
                raise Forbidden("an admin removes members only")
        return self._promotions_without(target)

    def check_role(self, actor: str, target: str, role: str) -> list[tuple[str, str]]:
        """Role changes to apply, in order: [(target, role)] or, for a transfer, also the old owner's."""
        self._group_only()
        if role not in ROLES:
            raise Invalid("role: must be owner, admin or member")
        self._require(actor, "owner")
        if target not in self.roles:
            raise NotFound("no such member")
        if target == actor:
            raise Invalid("user_id: an owner hands ownership to someone else")
        changes = [(target, role)] if self.roles[target] != role else []
        if role == "owner":
            changes.append((actor, "admin"))
        return changes

    def _promotions_without(self, leaving: str) -> list[tuple[str, str]]:
        rest = [u for u in self.roles if u != leaving]
        if not rest or any(self.roles[u] == "owner" for u in rest):
            return []
        admins = [u for u in rest if self.roles[u] == "admin"]
        return [((admins or rest)[0], "owner")]

    # ---- apply (after the event is durable) ------------------------------------------------
    def add(self, user_ids: list[str]) -> None:
        for u in user_ids:
            self.roles.setdefault(u, "member")

    def remove(self, user_id: str) -> None:
        self.roles.pop(user_id, None)

    def set_role(self, user_id: str, role: str) -> None:
        if user_id in self.roles:
            self.roles[user_id] = role
