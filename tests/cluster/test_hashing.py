"""Rendezvous hashing: one owner per device, minimal movement when members change."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.cluster.hashing import owner_of

names = st.text(st.characters(codec="utf-8", exclude_characters="\0/"), min_size=1, max_size=12)
member_sets = st.sets(names, min_size=1, max_size=7)
device_lists = st.lists(names, min_size=1, max_size=40, unique=True)


class TestOwnerOf:
    def test_no_members_no_owner(self) -> None:
        """Without live members nobody owns a device."""
        assert owner_of("lab/door", []) is None

    @given(member_sets, device_lists)
    def test_exactly_one_owner_independent_of_order(
        self, members: set[str], devices: list[str]
    ) -> None:
        """Every device has exactly one owner among the members, whatever their order."""
        for device in devices:
            owner = owner_of(device, sorted(members))
            assert owner in members
            assert owner_of(device, sorted(members, reverse=True)) == owner

    @given(member_sets, names, device_lists)
    def test_adding_a_node_moves_devices_only_to_it(
        self, members: set[str], new: str, devices: list[str]
    ) -> None:
        """A new member takes devices only for itself; no device moves between old members."""
        grown = members | {new}
        for device in devices:
            before, after = owner_of(device, members), owner_of(device, grown)
            assert after in (before, new)

    @given(st.sets(names, min_size=2, max_size=7), st.data(), device_lists)
    def test_removing_a_node_moves_only_its_devices(
        self, members: set[str], data: st.DataObject, devices: list[str]
    ) -> None:
        """Losing a member moves only the devices it owned."""
        gone = data.draw(st.sampled_from(sorted(members)))
        shrunk = members - {gone}
        for device in devices:
            before = owner_of(device, members)
            if before != gone:
                assert owner_of(device, shrunk) == before
            else:
                assert owner_of(device, shrunk) in shrunk

    @settings(max_examples=20)
    @given(st.integers(min_value=2, max_value=6))
    def test_a_new_node_takes_about_its_share(self, n: int) -> None:
        """Adding an (n+1)-th node moves about 1/(n+1) of 3,000 devices, not all of them."""
        members = [f"node-{i}" for i in range(n)]
        devices = [f"site-{i // 50}/door-{i}" for i in range(3000)]
        moved = sum(owner_of(d, members) != owner_of(d, [*members, "new"]) for d in devices)
        share = len(devices) / (n + 1)
        assert 0.75 * share < moved < 1.25 * share

    def test_shares_are_balanced(self) -> None:
        """Three nodes own 60 named devices each at least a tenth of the fleet, and the split is stable."""
        devices = [f"dev-{i:02d}" for i in range(60)]
        counts = {m: 0 for m in ("a", "b", "c")}
        for device in devices:
            counts[owner_of(device, counts) or ""] += 1
        assert sum(counts.values()) == 60
        assert min(counts.values()) >= 6
