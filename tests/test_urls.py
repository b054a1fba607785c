from crawler.urls import Scope, normalize_url


def test_normalize_lowercases_host_and_drops_default_port_and_fragment():
    assert normalize_url("HTTP://Example.COM:80/a/b.html#frag") == "http://example.com/a/b.html"


def test_normalize_sorts_query_and_drops_tracking_parameters():
    assert normalize_url("https://x.org/p?b=2&utm_source=news&a=1") == "https://x.org/p?a=1&b=2"


def test_normalize_resolves_dot_segments_and_keeps_trailing_slash():
    assert normalize_url("http://x.org/a/./b/../c/") == "http://x.org/a/c/"


def test_scope_uses_seed_directory_as_prefix():
    scope = Scope.from_seeds(["http://127.0.0.1:8000/docs/index.html"])
    assert scope.allows("http://127.0.0.1:8000/docs/sub/page.html")
    assert not scope.allows("http://127.0.0.1:8000/private/page.html")
    assert not scope.allows("http://other.host/docs/page.html")
    assert not scope.allows("ftp://127.0.0.1:8000/docs/x")


def test_scope_exclude_pattern_wins():
    scope = Scope.from_seeds(["http://h/docs/"], exclude=[r"\.pdf$"])
    assert scope.allows("http://h/docs/a.html")
    assert not scope.allows("http://h/docs/a.pdf")


def test_scope_of_a_seed_at_the_site_root_covers_the_site():
    scope = Scope.from_seeds(["http://h:8000/index.html"])
    assert scope.prefixes == ("/",)
    assert scope.allows("http://h:8000/sql-select.html")
