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


def test_page_dates_prefer_modified_meta_then_published_then_time():
    from crawler.extract import extract_html
    both = ('<head><meta property="article:published_time" content="2020-01-01">'
            '<meta property="article:modified_time" content="2021-06-07T08:09:10+02:00"></head><body><p>x</p></body>')
    assert extract_html(both).modified == "2021-06-07T06:09:10+00:00"
    assert extract_html('<body><p>Posted <time datetime="2019-12-31">NYE</time></p></body>').modified == "2019-12-31"
    assert extract_html('<head><meta name="date" content="not a date"></head><body><p>x</p></body>').modified == ""


def test_iso_dates_from_http_and_iso_forms():
    from crawler.dates import iso_date
    assert iso_date("Tue, 05 Mar 2024 10:20:00 GMT") == "2024-03-05T10:20:00+00:00"
    assert iso_date("2024-03-05") == "2024-03-05"
    assert iso_date("2024-03-05T10:20:00Z") == "2024-03-05T10:20:00+00:00"
    assert iso_date("0001-01-01") == "" and iso_date("2024-13-45") == "" and iso_date("soon") == ""


def test_language_detection_by_stopwords():
    from crawler.lang import detect_language
    en = "The server keeps a log of every request, and it is rotated when the file grows too large for the disk."
    fr = "Le serveur garde un journal de chaque requête, et il est tourné quand le fichier devient trop grand pour le disque."
    assert detect_language(en * 2) == "en"
    assert detect_language(fr * 2) == "fr"
    assert detect_language("SELECT * FROM t WHERE x = 1") == ""  # too short to tell
    assert detect_language("lorem ipsum dolor " * 30) == ""
    ru = ("Сервер хранит журнал каждого запроса, и он не должен расти, когда файл log_file уже "
          "есть на диске. Это было так и в прошлой версии, но теперь её нет. ")
    assert detect_language(ru + "the file of the server is in the log and it is not there for all of us to see") == "ru"
