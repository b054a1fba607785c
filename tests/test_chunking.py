from crawler.types import Page
from indexer.chunking import ChunkSpec, chunk_page


def page(text, title="T"):
    return Page(url="http://h/p", title=title, text=text, content_hash="x")


def test_chunks_carry_heading_path_and_positions():
    text = "# Top\n\n" + "intro words " * 30 + "\n\n## Sub\n\n" + "sub words " * 30
    chunks = chunk_page(page(text), ChunkSpec(chunk_words=50, overlap_words=5, min_words=10), first_id=7)
    assert [c.chunk_id for c in chunks] == list(range(7, 7 + len(chunks)))
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert chunks[0].heading == "Top"
    assert any(c.heading == "Top > Sub" for c in chunks)


def test_code_block_is_never_split():
    code = "```\n" + "\n".join(f"x{i} = {i}" for i in range(60)) + "\n```"
    text = "# H\n\n" + "word " * 40 + "\n\n" + code + "\n\n" + "after " * 40
    chunks = chunk_page(page(text), ChunkSpec(chunk_words=80, overlap_words=10, min_words=10))
    holding = [c for c in chunks if "x0 = 0" in c.text]
    assert len(holding) == 1 and "x59 = 59" in holding[0].text


def test_long_paragraph_is_split_with_overlap():
    words = [f"w{i}" for i in range(400)]
    chunks = chunk_page(page(" ".join(words)), ChunkSpec(chunk_words=100, overlap_words=20, min_words=10))
    assert len(chunks) >= 4
    first, second = chunks[0].text.split(), chunks[1].text.split()
    assert first[-20:] == second[:20]
    assert all(len(c.text.split()) <= 120 for c in chunks)


def test_same_text_gives_same_hash_and_empty_page_no_chunks():
    a = chunk_page(page("# H\n\nhello world"), ChunkSpec())
    b = chunk_page(page("# H\n\nhello world"), ChunkSpec())
    assert a[0].content_hash == b[0].content_hash
    assert chunk_page(page(""), ChunkSpec()) == []
