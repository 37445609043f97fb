"""The Python examples of README.md and docs/ run, so the documentation cannot drift from the code.

Each page's ``>>>`` examples run as one doctest session in an empty folder of
their own, offline (synthetic galaxies, the shipped model); output may be
abbreviated with ``...``.
"""

import doctest

import pytest

from conftest import PROJECT_ROOT

PAGES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]


def test_every_docs_page_is_listed_in_the_readme():
    readme = (PROJECT_ROOT / "README.md").read_text()
    unlisted = [page.name for page in PAGES[1:] if f"docs/{page.name}" not in readme]
    assert not unlisted, f"docs pages the README does not link: {unlisted}"


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_the_python_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    result = doctest.testfile(str(page), module_relative=False, name=page.name, report=True,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of the {result.attempted} examples in {page.name} failed (above)"
