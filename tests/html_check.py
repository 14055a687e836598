"""Shared test helper: check that HTML nests properly and return its text."""

from html.parser import HTMLParser


class _Checker(HTMLParser):
    """Collects text and records tags that do not close in order."""

    VOID = {"img", "br", "hr", "meta", "input", "col", "wbr"}

    def __init__(self):
        super().__init__()
        self.stack, self.text, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def parse_html(text: str) -> str:
    """Text content of ``text``; fails when tags do not nest or stay open."""
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert not checker.errors and not checker.stack, (checker.errors, checker.stack)
    return " ".join(checker.text)
