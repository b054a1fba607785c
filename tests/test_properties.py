"""Property tests (hypothesis, few examples: fast tier) for fusion, chunking and citation
renumbering."""
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crawler.types import Page
from indexer.chunking import ChunkSpec, chunk_page
from retriever.fusion import reciprocal_rank_fusion, weighted_score_fusion
from synthesizer.citations import verify

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
rankings = st.lists(st.lists(st.integers(0, 40), unique=True, max_size=20), min_size=1, max_size=4)


@FAST
@given(rankings, st.randoms(use_true_random=False))
def test_rrf_does_not_depend_on_the_order_of_the_engines(runs, rnd):
    shuffled = runs[:]
    rnd.shuffle(shuffled)
    a, b = reciprocal_rank_fusion(runs), reciprocal_rank_fusion(shuffled)
    assert a.keys() == b.keys() and all(abs(a[d] - b[d]) < 1e-12 for d in a)
    assert set(a) == {d for r in runs for d in r}


@FAST
@given(st.lists(st.integers(0, 40), unique=True, min_size=2, max_size=20))
def test_rrf_ties_score_equal_and_rank_is_monotone(ranking):
    scores = reciprocal_rank_fusion([ranking, ranking[::-1]])
    n = len(ranking)  # the two lists mirror each other: every document ties with its mirror image
    for i in range(n):
        assert abs(scores[ranking[i]] - scores[ranking[n - 1 - i]]) < 1e-12
    single = reciprocal_rank_fusion([ranking])
    assert [d for d, _ in sorted(single.items(), key=lambda kv: -kv[1])] == ranking


@FAST
@given(st.lists(st.lists(st.tuples(st.integers(0, 30), st.floats(-50, 50)), max_size=10,
                         unique_by=lambda t: t[0]), min_size=1, max_size=3))
def test_weighted_fusion_is_bounded_by_the_weights(runs):
    scores = weighted_score_fusion(runs, [1.0] * len(runs))
    assert all(-1e-9 <= s <= len(runs) + 1e-9 for s in scores.values())


words = st.text(alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd")), min_size=1, max_size=12)
blocks = st.one_of(
    st.lists(words, min_size=1, max_size=400).map(" ".join),
    st.tuples(st.integers(1, 4), st.lists(words, min_size=1, max_size=6)).map(lambda t: "#" * t[0] + " " + " ".join(t[1])),
    st.lists(st.lists(words, min_size=1, max_size=8).map(" ".join), min_size=1, max_size=40)
      .map(lambda lines: "```\n" + "\n".join(lines) + "\n```"))


@FAST
@given(st.lists(blocks, min_size=1, max_size=12), st.sampled_from([(50, 10, 10), (150, 30, 40), (20, 0, 5)]))
def test_chunks_cover_every_word_and_stay_within_the_window(parts, sizes):
    size, overlap, min_size = sizes
    spec = ChunkSpec(size, overlap, min_size)
    text = "\n\n".join(parts)
    page = Page(url="https://x.test/p", title="T", text=text, content_hash="")
    chunks = chunk_page(page, spec)
    seen = set()
    for c in chunks:
        seen.update(c.text.split())
        assert spec.units(c.text) <= spec.block_limit + overlap  # what the embedder is asked to read
    assert set(text.split()) - {"```"} - {h for h in text.split() if re.fullmatch("#+", h)} <= seen


passages = st.lists(st.text(alphabet="abcdefgh xyz.", min_size=5, max_size=80), min_size=1, max_size=5)


@FAST
@given(passages, st.lists(st.tuples(st.sampled_from(["abc", "def gh", "xyz", "bad"]),
                                    st.lists(st.integers(-2, 8), max_size=3)), max_size=6))
def test_citation_markers_are_renumbered_in_order_of_first_use(ps, sentences):
    answer = " ".join(f"{s} {''.join(f'[{n}]' for n in refs)}." for s, refs in sentences)
    checked = verify(answer, ps, min_support=0.0, drop_unsupported=False)
    used = [int(n) for n in re.findall(r"\[(\d+)\]", checked.text)]
    firsts = list(dict.fromkeys(used))
    assert firsts == list(range(1, len(firsts) + 1))  # 1..m, in order of first use
    assert len(checked.cited) == len(firsts) and all(0 <= i < len(ps) for i in checked.cited)
