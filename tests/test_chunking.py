from crawler.types import Page
from indexer.chunking import ChunkSpec, chunk_page


def page(text, title="T"):
    return Page(url="http://h/p", title=title, text=text, content_hash="x")


def test_chunks_carry_heading_path_and_positions():
    text = "# Top\n\n" + "intro words " * 30 + "\n\n## Sub\n\n" + "sub words " * 30
    chunks = chunk_page(page(text), ChunkSpec(size=50, overlap=5, min_size=10), first_id=7)
    assert [c.chunk_id for c in chunks] == list(range(7, 7 + len(chunks)))
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert chunks[0].heading == "Top"
    assert any(c.heading == "Top > Sub" for c in chunks)


def test_code_block_is_never_split():
    code = "```\n" + "\n".join(f"x{i} = {i}" for i in range(60)) + "\n```"
    text = "# H\n\n" + "word " * 40 + "\n\n" + code + "\n\n" + "after " * 40
    chunks = chunk_page(page(text), ChunkSpec(size=80, overlap=10, min_size=10))
    holding = [c for c in chunks if "x0 = 0" in c.text]
    assert len(holding) == 1 and "x59 = 59" in holding[0].text


def test_long_paragraph_is_split_with_overlap():
    words = [f"w{i}" for i in range(400)]
    chunks = chunk_page(page(" ".join(words)), ChunkSpec(size=100, overlap=20, min_size=10))
    assert len(chunks) >= 4
    first, second = chunks[0].text.split(), chunks[1].text.split()
    assert first[-20:] == second[:20]
    assert all(len(c.text.split()) <= 120 for c in chunks)


def test_same_text_gives_same_hash_and_empty_page_no_chunks():
    a = chunk_page(page("# H\n\nhello world"), ChunkSpec())
    b = chunk_page(page("# H\n\nhello world"), ChunkSpec())
    assert a[0].content_hash == b[0].content_hash
    assert chunk_page(page(""), ChunkSpec()) == []


def token_spec(embedder, size=60, overlap=10, min_size=10, hard=90):
    return ChunkSpec(size=size, overlap=overlap, min_size=min_size, hard_limit=hard, weigh=embedder.count_tokens)


def test_token_chunks_stay_within_the_target_in_the_embedders_tokens(embedder):
    # identifiers split into many word pieces: 150 such words are far more than 150 tokens
    text = "# Catalog\n\n" + " ".join(f"pg_stat_activity_{i}" for i in range(150))
    spec = token_spec(embedder)
    chunks = chunk_page(page(text), spec)
    assert len(chunks) >= 5
    assert all(embedder.count_tokens(c.text) <= spec.size + spec.overlap for c in chunks)
    assert chunks[0].text.split()[-2:] == chunks[1].text.split()[:2]  # overlap carried over in tokens
    # words mode would have kept it as one chunk
    assert len(chunk_page(page(text), ChunkSpec(size=200, overlap=20, min_size=10))) == 1


def test_code_block_and_table_stay_whole_up_to_the_hard_limit(embedder):
    code = "```\n" + "\n".join(f"x{i} = {i}" for i in range(15)) + "\n```"
    table = "\n\n".join(f"row{i} | value {i} |" for i in range(12))
    text = "# H\n\n" + "intro " * 30 + "\n\n" + code + "\n\n" + table + "\n\n" + "after " * 30
    spec = token_spec(embedder)
    assert spec.units(code) > spec.size and spec.units(code) <= spec.block_limit
    chunks = chunk_page(page(text), spec)
    holding = [c for c in chunks if "x0 = 0" in c.text]
    assert len(holding) == 1 and "x14 = 14" in holding[0].text
    rows = [c for c in chunks if "row0 |" in c.text]
    assert len(rows) == 1 and "row11 | value 11 |" in rows[0].text
    # above the hard limit a code block is split at line boundaries only
    big = "```\n" + "\n".join(f"y{i} = {i}" for i in range(60)) + "\n```"
    parts = [c.text for c in chunk_page(page("# H\n\n" + big), spec)]
    assert len(parts) > 1 and all(embedder.count_tokens(p) <= spec.block_limit for p in parts)
    assert sum(p.count("y") for p in parts) == 60


def test_a_heading_never_ends_a_chunk():
    # a short section, then a heading whose paragraph does not fit: the heading goes with its text
    text = ("# FAQ\n\n### How is the version numbered?\n\n" + "number words " * 20 +
            "\n\n### How do I obtain the source?\n\n" + "The source is in the repository " * 10)
    chunks = chunk_page(page(text), ChunkSpec(size=60, overlap=10, min_size=50))
    assert all(not c.text.rstrip().split("\n")[-1].startswith("#") for c in chunks)
    holder = next(c for c in chunks if "How do I obtain the source?" in c.text)
    assert holder.text.startswith("### How do I obtain the source?") and "repository" in holder.text
    assert holder.heading == "FAQ > How do I obtain the source?"
    # a page that ends in a heading keeps it
    tail = chunk_page(page("# A\n\n" + "words " * 30 + "\n\n## Empty section"), ChunkSpec(size=60, overlap=10, min_size=50))
    assert "## Empty section" in " ".join(c.text for c in tail)
