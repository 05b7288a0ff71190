"""Names in a log field or a sentence: all up to the bound, then how many more."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from syncd.listing import LISTED, first_names, in_words


@given(st.lists(st.text(min_size=1), max_size=3 * LISTED))
def test_the_first_names_in_order_and_the_count_of_the_rest(names: list[str]) -> None:
    shown, more = first_names(names)
    assert shown == names[:LISTED]
    assert len(shown) + more == len(names)


def test_a_sentence_lists_a_short_list_whole_and_counts_past_the_bound() -> None:
    assert in_words(["a", "b", "c"]) == "a, b, c"
    assert in_words([]) == ""
    many = [f"site-1/door-{n:05d}" for n in range(10_000)]
    words = in_words(many)
    assert words.startswith("site-1/door-00000, site-1/door-00001, ")
    assert words.endswith("site-1/door-00099 and 9,900 more")
    assert "door-00100" not in words
