"""Wave assignment: first match wins, percent rounds up from a stable hash order."""

from __future__ import annotations

import random
from fnmatch import fnmatchcase

from hypothesis import given
from hypothesis import strategies as st

from syncd.policy import UNMATCHED_WAVE, Wave
from syncd.waves import DEFAULT_WAVE, assign_waves, hash_rank, wave_order

FLEET12 = [f"site-{s}/door-{n}" for s in "ab" for n in range(5)] + ["lab/one", "lab/two"]
JUDGED = (Wave("canary", ("lab/*",)), Wave("early", percent=25), Wave("rest"))

device_names = st.text(alphabet="abc/-12", min_size=1, max_size=6)
fleets = st.lists(device_names, max_size=25, unique=True)
globs = st.text(alphabet="abc/-12*?", min_size=1, max_size=4)
glob_waves = st.lists(globs, min_size=1, max_size=3).map(tuple)


@st.composite
def wave_lists(draw: st.DrawFn, *, percent: bool = True) -> tuple[Wave, ...]:
    """Up to four waves with unique names: globs, percents (when allowed), maybe a catch-all last."""
    kinds = ["glob", "percent"] if percent else ["glob"]
    count = draw(st.integers(0, 4))
    waves = []
    for i in range(count):
        kind = draw(st.sampled_from(kinds))
        if kind == "glob":
            waves.append(Wave(f"w{i}", draw(glob_waves)))
        else:
            waves.append(Wave(f"w{i}", percent=draw(st.integers(1, 100))))
    if draw(st.booleans()):
        waves.append(Wave("rest"))
    return tuple(waves)


def ceil_share(count: int, percent: int) -> int:
    return -(-count * percent // 100)


def left_before(assigned: dict[str, str], waves: tuple[Wave, ...], index: int) -> list[str]:
    """Devices not taken by waves before ``index``, in hash order."""
    earlier = {w.name for w in waves[:index]}
    return sorted((d for d, w in assigned.items() if w not in earlier), key=hash_rank)


class TestExamples:
    def test_judged_layout_canary_25_percent_rest(self) -> None:
        """12 devices, canary lab/*, 25 %, rest: 2 canaries, 3 (25 % of 10, rounded up), 7."""
        assigned = assign_waves(FLEET12, JUDGED)
        counts = {w: list(assigned.values()).count(w) for w in ("canary", "early", "rest")}
        assert counts == {"canary": 2, "early": 3, "rest": 7}
        assert {d for d, w in assigned.items() if w == "canary"} == {"lab/one", "lab/two"}

    def test_no_waves_is_one_wave_of_every_device(self) -> None:
        """A policy without waves puts every device in the one wave 'all'."""
        assert assign_waves(["b", "a"], ()) == {"a": DEFAULT_WAVE, "b": DEFAULT_WAVE}
        assert wave_order(()) == (DEFAULT_WAVE,)

    def test_devices_no_wave_matches_go_last_as_unmatched(self) -> None:
        """Without a catch-all wave, unmatched devices join the implicit last wave 'unmatched'."""
        waves = (Wave("canary", ("lab/*",)),)
        assert assign_waves(["lab/x", "site/y"], waves) == {
            "lab/x": "canary",
            "site/y": UNMATCHED_WAVE,
        }
        assert wave_order(waves) == ("canary", UNMATCHED_WAVE)
        assert wave_order((*waves, Wave("rest"))) == ("canary", "rest")

    def test_globs_match_case_sensitively_and_across_slashes(self) -> None:
        """Globs use fnmatchcase: Lab/* does not match lab/x, and * crosses '/'."""
        waves = (Wave("a", ("Lab/*",)), Wave("b", ("*x",)))
        assert assign_waves(["lab/x", "site/a/x"], waves) == {"lab/x": "b", "site/a/x": "b"}

    def test_percent_takes_at_least_one(self) -> None:
        """1 % of three devices is one device, not none."""
        assigned = assign_waves(["a", "b", "c"], (Wave("p", percent=1), Wave("rest")))
        assert list(assigned.values()).count("p") == 1

    def test_percent_picks_by_hash_not_by_name_or_input_order(self) -> None:
        """The percent wave is the devices first in SHA-256 order, whatever the input order."""
        fleet = [f"d{i}" for i in range(10)]
        expected = set(sorted(fleet, key=hash_rank)[:3])
        for order in (fleet, list(reversed(fleet))):
            assigned = assign_waves(order, (Wave("p", percent=30),))
            assert {d for d, w in assigned.items() if w == "p"} == expected


class TestProperties:
    @given(fleets, wave_lists())
    def test_every_device_in_exactly_one_known_wave(
        self, fleet: list[str], waves: tuple[Wave, ...]
    ) -> None:
        """Each device gets exactly one wave, and it is one wave_order names."""
        assigned = assign_waves(fleet, waves)
        assert sorted(assigned) == sorted(fleet)
        assert set(assigned.values()) <= set(wave_order(waves))

    @given(fleets, wave_lists())
    def test_first_match_wins(self, fleet: list[str], waves: tuple[Wave, ...]) -> None:
        """A device is in a glob wave only if it matches it, and never after a glob wave it matches."""
        assigned = assign_waves(fleet, waves)
        order = [w.name for w in waves]
        for device, name in assigned.items():
            index = order.index(name) if name in order else len(order)
            for i, wave in enumerate(waves):
                matches = wave.devices is not None and any(
                    fnmatchcase(device, g) for g in wave.devices
                )
                if i < index:
                    assert not matches
                if i == index and wave.devices is not None:
                    assert matches

    @given(fleets, wave_lists())
    def test_percent_rounds_up_and_takes_the_first_by_hash(
        self, fleet: list[str], waves: tuple[Wave, ...]
    ) -> None:
        """A percent wave has ceil(share of the devices left) devices, the first of them by hash."""
        assigned = assign_waves(fleet, waves)
        for i, wave in enumerate(waves):
            if wave.percent is None:
                continue
            left = left_before(assigned, waves, i)
            taken = sorted((d for d, w in assigned.items() if w == wave.name), key=hash_rank)
            assert taken == left[: ceil_share(len(left), wave.percent)]
            assert len(taken) >= 1 or not left

    @given(fleets, wave_lists(percent=False), device_names)
    def test_glob_waves_depend_on_nothing_but_the_name(
        self, fleet: list[str], waves: tuple[Wave, ...], other: str
    ) -> None:
        """With glob waves only, a device's wave is the same alone, in the fleet, or with another added."""
        assigned = assign_waves(fleet, waves)
        grown = assign_waves([*fleet, other], waves)
        for device in fleet:
            assert assigned[device] == assign_waves([device], waves)[device] == grown[device]

    @given(fleets, st.lists(glob_waves, max_size=2), st.integers(1, 100), device_names)
    def test_adding_a_device_never_moves_earlier_glob_devices_and_keeps_the_percent_wave(
        self, fleet: list[str], prefix: list[tuple[str, ...]], percent: int, added: str
    ) -> None:
        """Adding a device moves no device of an earlier glob wave; the percent wave only grows,
        except that the added device may take the place of its last member by hash."""
        waves = (
            *(Wave(f"g{i}", g) for i, g in enumerate(prefix)),
            Wave("p", percent=percent),
            Wave("rest"),
        )
        before = assign_waves(fleet, waves)
        after = assign_waves([*fleet, added], waves)
        old = {d for d, w in before.items() if w == "p"}
        new = {d for d, w in after.items() if w == "p"}
        for device, wave in before.items():
            if wave.startswith("g"):
                assert after[device] == wave
        if added in new and added not in fleet:
            lost = old - new
            assert len(lost) <= 1
            assert all(hash_rank(d) > hash_rank(added) for d in lost)
        else:
            assert old <= new

    @given(fleets, st.integers(1, 100), st.data())
    def test_removing_a_device_outside_the_percent_wave_drops_only_its_last_members(
        self, fleet: list[str], percent: int, data: st.DataObject
    ) -> None:
        """Removing a device not in a percent wave keeps the wave identical while its rounded-up
        size is unchanged; when the size shrinks, only its last members by hash leave."""
        waves = (Wave("p", percent=percent), Wave("rest"))
        before = assign_waves(fleet, waves)
        outside = sorted(d for d, w in before.items() if w != "p")
        if not outside:
            return
        removed = data.draw(st.sampled_from(outside))
        after = assign_waves([d for d in fleet if d != removed], waves)
        old = sorted((d for d, w in before.items() if w == "p"), key=hash_rank)
        new = sorted((d for d, w in after.items() if w == "p"), key=hash_rank)
        assert new == old[: len(new)]
        assert len(new) == ceil_share(len(fleet) - 1, percent)
        if ceil_share(len(fleet) - 1, percent) == ceil_share(len(fleet), percent):
            assert new == old

    @given(fleets, wave_lists(), st.randoms(use_true_random=False))
    def test_input_order_and_duplicates_do_not_matter(
        self, fleet: list[str], waves: tuple[Wave, ...], rng: random.Random
    ) -> None:
        """The assignment depends on the set of names, not their order or repetition."""
        shuffled = [*fleet, *fleet[:3]]
        rng.shuffle(shuffled)
        assert assign_waves(shuffled, waves) == assign_waves(fleet, waves)
