"""Every relative link in README.md and docs/*.md points at a file that exists, and every #anchor at a heading of
its page (GitHub's heading ids). Links to other sites are not fetched."""

import glob
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK_RE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE_RE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE_RE = re.compile(r"`[^`\n]*`")


def _pages():
    return [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))


def _prose(text):
    """The text without fenced code blocks and inline code, where brackets are not links."""
    return CODE_RE.sub("", FENCE_RE.sub("", text))


def heading_ids(text):
    """GitHub's ids of the headings of a Markdown text: lower case, punctuation dropped (letters, digits, spaces,
    hyphens and underscores kept), spaces as hyphens, and -1, -2, ... for repeats."""
    ids, seen = set(), {}
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE_RE.sub("", text), re.M):
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        ids.add(slug if n == 0 else f"{slug}-{n}")
    return ids


def broken_links(path):
    """['target: why', ...] for the relative links of the Markdown file at `path` that do not resolve."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    broken = []
    for target in LINK_RE.findall(_prose(text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if not os.path.exists(dest):
            broken.append(f"{target}: no such file")
            continue
        if anchor and dest.endswith(".md"):
            with open(dest, encoding="utf-8") as f:
                if anchor not in heading_ids(f.read()):
                    broken.append(f"{target}: no heading #{anchor} in {os.path.relpath(dest, REPO)}")
    return broken


def test_the_docs_exist():
    names = {os.path.basename(p) for p in _pages()}
    assert {"README.md", "demo.md", "training.md", "inference.md", "web-app.md", "evaluation.md", "pretrained.md",
            "gpu.md", "benchmarks.md"} <= names


@pytest.mark.parametrize("path", _pages(), ids=lambda p: os.path.relpath(p, REPO))
def test_every_relative_link_resolves(path):
    assert not broken_links(path), broken_links(path)


def test_readme_stays_a_front_door():
    assert os.path.getsize(os.path.join(REPO, "README.md")) <= 15 * 1024


# The checker itself must be able to fail.


def test_checker_reports_missing_files_and_anchors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Speed and memory\n\n## Speed and memory\n")
    (tmp_path / "pic.png").write_bytes(b"")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n![a picture](pic.png) [fine](docs/page.md#speed-and-memory)"
        " [repeat](docs/page.md#speed-and-memory-1) [here](#title) [web](https://example.com/x.md)"
        " `[not a link](nowhere.md)`\n\n"
        "```\n[also not](nowhere.md)\n```\n\n"
        "[gone](docs/missing.md) [bad anchor](docs/page.md#speed) [no such heading](#nope) ![missing](img.png)\n")
    assert broken_links(str(readme)) == [
        "docs/missing.md: no such file", "docs/page.md#speed: no heading #speed in " +
        os.path.relpath(str(tmp_path / "docs" / "page.md"), REPO),
        "#nope: no heading #nope in " + os.path.relpath(str(readme), REPO), "img.png: no such file"]


def test_heading_ids_follow_github():
    text = "# Training recipe: official code vs ours\n## The PyTorch port's `.pth` files\n## Tests\n## Tests\n"
    assert heading_ids(text) == {"training-recipe-official-code-vs-ours", "the-pytorch-ports-pth-files", "tests",
                                 "tests-1"}
