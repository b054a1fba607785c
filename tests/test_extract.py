from crawler.extract import extract_html


def test_boilerplate_is_removed_and_main_content_kept():
    html = """<html lang="en"><head><title>T</title></head><body>
    <nav class="navbar">MENU ITEMS</nav><div class="sidebar">SIDE</div>
    <div role="main"><h1>Heading</h1><p>Real content here.</p></div>
    <footer>COPYRIGHT</footer><script>var x = 1;</script></body></html>"""
    ext = extract_html(html)
    assert "Real content here." in ext.text
    for junk in ("MENU", "SIDE", "COPYRIGHT", "var x"):
        assert junk not in ext.text
    assert ext.title == "T" and ext.lang == "en"


def test_headings_become_markers_and_code_blocks_are_fenced():
    html = "<body><h2>Usage <a class='toc-backref'>x</a></h2><p>Call it.</p><pre>a = 1\n\nb = 2</pre></body>"
    ext = extract_html(html)
    assert "## Usage x" in ext.text
    assert "```\na = 1\n\nb = 2\n```" in ext.text
    assert ext.headings == ("Usage x",)


def test_malformed_html_does_not_crash():
    ext = extract_html("<html><body><p>unclosed <b>bold <div>mixed</p></span>text</body")
    assert "unclosed" in ext.text and "mixed" in ext.text


def test_xml_declaration_with_encoding_is_accepted():
    html = '<?xml version="1.0" encoding="UTF-8"?><html><head><title>X</title></head><body><p>Body</p></body></html>'
    assert extract_html(html).text == "Body"


def test_empty_and_binary_like_input_give_empty_text():
    assert extract_html("").text == ""
    assert extract_html("   ").text == ""


def test_links_and_canonical_are_absolute():
    html = '<head><link rel="canonical" href="/c.html"></head><body><a href="b.html">b</a></body>'
    ext = extract_html(html, "http://h/dir/a.html")
    assert ext.canonical == "http://h/c.html"
    assert "http://h/dir/b.html" in ext.links
