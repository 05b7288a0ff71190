"""When the nodes' differing revisions are worth a warning, and when a node lags (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from syncd.cluster.agreement import Notice, RevisionsSeen, follow, lags, revision_grace
from syncd.cluster.commit_order import CommitOrder
from tests.git_repo import git

GRACE = 5.0
Step = tuple[float, Mapping[str, str]]


def run(steps: Sequence[Step], grace: float = GRACE) -> list[tuple[float, Notice]]:
    """Feed ``(time, revisions)`` observations through ``follow``; the notices with their time."""
    seen = RevisionsSeen()
    notices = []
    for now, revisions in steps:
        seen, notice = follow(seen, revisions, now=now, grace=grace)
        if notice is not None:
            notices.append((now, notice))
    return notices


def ticks(start: float, end: float, revisions: Mapping[str, str], every: float = 0.5) -> list[Step]:
    """The same revisions seen at each tick from ``start`` to before ``end``."""
    count = round((end - start) / every)
    return [(start + i * every, revisions) for i in range(count)]


SAME = {"n1": "bbbb", "n2": "bbbb"}
SPLIT = {"n1": "bbbb", "n2": "aaaa"}


class TestRevisionGrace:
    def test_two_resyncs_at_least_the_lease_and_five_seconds(self) -> None:
        """The grace is two resync intervals, but no less than lease_ttl nor 5 s."""
        assert revision_grace(resync_interval=60, lease_ttl=10) == 120
        assert revision_grace(resync_interval=1, lease_ttl=30) == 30
        assert revision_grace(resync_interval=1, lease_ttl=2) == 5


class TestLags:
    def test_an_older_revision_lags_at_once(self) -> None:
        """A node lags the moment another loads a different revision after it: no grace."""
        revisions = {"n1": ("aaaa", 100.0), "n2": ("bbbb", 100.001)}
        assert lags(revisions, node="n1", revision="aaaa", now=100.002)
        assert not lags(revisions, node="n2", revision="bbbb", now=100.002)

    def test_a_revision_just_loaded_does_not_lag(self) -> None:
        """A revision this node has loaded but not published yet counts as loaded now."""
        revisions = {"n1": ("aaaa", 100.0), "n2": ("bbbb", 100.5)}
        assert not lags(revisions, node="n1", revision="cccc", now=101.0)
        assert not lags({"n1": ("aaaa", 100.0)}, node="n1", revision="aaaa", now=101.0)

    def test_the_git_history_orders_revisions_before_the_time_they_were_loaded(
        self, tmp_path: Path
    ) -> None:
        """A node started late on an older commit lags (it was the newest by load time),
        one on the newer commit does not; a commit this checkout lacks is newer than ours;
        revisions Git cannot order are ordered by load time."""
        repo = tmp_path / "repo"
        repo.mkdir()
        git(repo, "init", "-q")
        commits = []
        for n in range(3):
            (repo / "d.yaml").write_text(f"n: {n}\n")
            git(repo, "add", "-A")
            git(repo, "commit", "-qm", f"c{n}")
            commits.append(git(repo, "rev-parse", "HEAD"))
        old, mid, new = commits
        order = CommitOrder(repo)
        assert order(old, new) == "older" and order(new, old) == "newer"
        assert order(new, "f" * 40) == "older"  # pushed after our last fetch
        assert order("tree:0123456789ab", new) is None
        assert CommitOrder(tmp_path)(old, new) is None  # no repository: unknown
        # the newer commit's node loaded first, the older one's (restarted late) after it
        revisions = {"up": (new, 100.0), "late": (mid, 200.0)}
        assert lags(revisions, node="late", revision=mid, now=201.0, order=order)
        assert not lags(revisions, node="up", revision=new, now=201.0, order=order)
        assert not lags(revisions, node="late", revision=mid, now=201.0)  # by time alone
        tree = {"up": ("tree:aaaaaaaaaaaa", 100.0), "late": ("tree:bbbbbbbbbbbb", 200.0)}
        assert lags(tree, node="up", revision="tree:aaaaaaaaaaaa", now=201.0, order=order)


class TestFollow:
    def test_a_difference_shorter_than_the_grace_says_nothing(self) -> None:
        """Revisions that differ for less than the grace, as after every push, log nothing."""
        steps = [*ticks(0, 10, SAME), *ticks(10, 10 + GRACE - 0.5, SPLIT), *ticks(15, 20, SAME)]
        assert run(steps) == []

    def test_a_lasting_difference_is_warned_once_then_agreement_said_once(self) -> None:
        """A difference that outlasts the grace is warned of once, however long; its end once."""
        steps = [*ticks(0, 10, SAME), *ticks(10, 40, SPLIT), *ticks(40, 50, SAME)]
        assert run(steps) == [(15.0, Notice("differs", 5.0)), (40.0, Notice("agrees", 30.0))]

    def test_a_new_lasting_state_is_warned_again(self) -> None:
        """When a lasting difference takes another shape that lasts too, that is warned of once."""
        later = {"n1": "cccc", "n2": "aaaa"}
        steps = [*ticks(0, 20, SPLIT), *ticks(20, 40, later)]
        assert [t for t, _ in run(steps)] == [5.0, 25.0]

    def test_a_node_stuck_while_commits_keep_coming_is_warned_of(self) -> None:
        """A node stuck behind is reported after the grace even if the others move on faster."""
        steps: list[Step] = []
        for commit in range(12):  # a commit every 2 s: n1 at once, n2 a tick later, n3 never
            new, old = f"c{commit + 1}", f"c{commit}"
            steps += [
                (2.0 * commit, {"n1": new, "n2": old, "n3": "c0"}),
                (2.0 * commit + 0.5, {"n1": new, "n2": new, "n3": "c0"}),
            ]
        notices = run(steps)
        assert notices and notices[0] == (6.0, Notice("differs", 6.0))
        assert all(n.kind == "differs" for _, n in notices)
        assert len(notices) == 1  # no state lasted the grace after that: no flood

    def test_one_member_or_none_agrees(self) -> None:
        """A lone member, or none that published a revision, never differs."""
        steps = [*ticks(0, 20, {"n1": "aaaa"}), *ticks(20, 40, {})]
        assert run(steps) == []


nodes = st.sampled_from(["n1", "n2", "n3"])
revision_maps = st.dictionaries(nodes, st.sampled_from(["aaaa", "bbbb", "cccc"]), max_size=3)
step_lists = st.lists(
    st.tuples(st.floats(min_value=0, max_value=3, allow_nan=False), revision_maps), max_size=60
)


def differ(revisions: Mapping[str, str]) -> bool:
    return len(set(revisions.values())) > 1


class TestFollowProperties:
    @given(step_lists, st.floats(min_value=0.5, max_value=8))
    def test_warnings_follow_the_grace_once_per_state(
        self, gaps: list[tuple[float, dict[str, str]]], grace: float
    ) -> None:
        """Warnings only after a stretch of differing revisions outlasted the grace, never the
        same state twice in a row, the first as soon as the grace is over, and every state that
        lasts the grace warned of; agreement only after a warning, once."""
        seen, now = RevisionsSeen(), 0.0
        stretch_began: float | None = None  # since when the revisions have differed
        warned_states: list[tuple[tuple[str, str], ...]] = []
        state_shown: tuple[tuple[tuple[str, str], ...], float] = ((), 0.0)  # state, since
        for gap, revisions in gaps:
            now += gap
            seen, notice = follow(seen, revisions, now=now, grace=grace)
            if not differ(revisions):
                if warned_states:
                    assert notice is not None and notice.kind == "agrees"
                    assert stretch_began is not None
                    assert notice.differing_for == now - stretch_began
                else:
                    assert notice is None
                stretch_began, warned_states, state_shown = None, [], ((), 0.0)
            else:
                stretch_began = now if stretch_began is None else stretch_began
                state = tuple(sorted(revisions.items()))
                if notice is not None:
                    assert notice.kind == "differs"
                    assert now - stretch_began >= grace
                    assert notice.differing_for == now - stretch_began
                    assert not warned_states or warned_states[-1] != state
                    warned_states.append(state)
                elif not warned_states:
                    assert now - stretch_began < grace
                if state != state_shown[0]:
                    state_shown = (state, now)
                if now - state_shown[1] >= grace:  # a state that lasted: warned of, now or before
                    assert warned_states and warned_states[-1] == state
