"""README.md and docs/*.md: every relative link (markdown links and <img src>) names a file that exists, every
#anchor names a heading of its page, and every script quoted from tools/ exists. Failures name the file and line."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_FENCE = re.compile(r"^\s*(```|~~~)")
_MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_SRC = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
_TOOL = re.compile(r"(?<![\w/.-])tools/[\w.-]+?\.(?:py|sh)\b")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_EXTERNAL = ("http://", "https://", "mailto:")


def doc_files(repo=REPO):
    """README.md and docs/*.md of `repo`, sorted."""
    return [repo / "README.md"] + sorted((repo / "docs").glob("*.md"))


def _lines_outside_code(text):
    """(line number, line) of the lines outside fenced code blocks: links there are not rendered."""
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            yield number, line


def links(path):
    """(line number, target) of every markdown link and <img src> / <a href> of the file outside code blocks;
    inline code spans are skipped too."""
    for number, line in _lines_outside_code(path.read_text(encoding="utf-8")):
        line = re.sub(r"`[^`]*`", "", line)
        for pattern in (_MD_LINK, _HTML_SRC):
            for match in pattern.finditer(line):
                yield number, match.group(1)


def anchors(path):
    """GitHub's anchors of the file's headings: lower case, punctuation but '-' and '_' dropped, spaces to '-',
    repeats numbered -1, -2, ..."""
    seen = {}
    for _, line in _lines_outside_code(path.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(2).replace("`", "").lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        yield slug if count == 0 else f"{slug}-{count}"


def broken_links(files, repo=REPO):
    """'file:line: ...' for every relative link whose file, or whose #anchor in a markdown file, is missing."""
    problems = []
    for path in files:
        where = path.relative_to(repo)
        for number, target in links(path):
            if target.startswith(_EXTERNAL):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.is_relative_to(repo) or not linked.exists():
                problems.append(f"{where}:{number}: link {target!r}: no file {file_part!r} next to {where}")
                continue
            if anchor and linked.suffix == ".md" and anchor not in set(anchors(linked)):
                problems.append(f"{where}:{number}: link {target!r}: no heading with anchor #{anchor} in "
                                f"{linked.relative_to(repo)}")
    return problems


def missing_tools(files, repo=REPO):
    """'file:line: ...' for every tools/<name>.py or .sh mentioned (code blocks included) that does not exist."""
    problems = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for script in _TOOL.findall(line):
                if not (repo / script).is_file():
                    problems.append(f"{path.relative_to(repo)}:{number}: {script} does not exist")
    return problems


def test_every_relative_link_exists():
    problems = broken_links(doc_files())
    assert not problems, "broken links in README.md / docs:\n" + "\n".join(problems)


def test_every_quoted_tool_exists():
    problems = missing_tools(doc_files())
    assert not problems, "README.md / docs quote scripts that are not in tools/:\n" + "\n".join(problems)


def test_the_checks_see_the_pages_links_and_tools():
    # Guards against a parser that silently finds nothing: the front page links every docs page and a picture,
    # and quotes the quickstart's command.
    readme = REPO / "README.md"
    targets = {target for _, target in links(readme)}
    pages = {f"docs/{page.name}" for page in (REPO / "docs").glob("*.md")}
    assert pages <= {target.partition("#")[0] for target in targets}, pages - targets
    assert "docs/offsets_000028_overview.png" in targets
    assert "tools/train.py" in _TOOL.findall(readme.read_text(encoding="utf-8"))


def test_a_broken_link_anchor_or_tool_is_reported_with_file_and_line(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "train.py").write_text("")
    (tmp_path / "docs" / "a.png").write_text("")
    (tmp_path / "docs" / "page.md").write_text(
        "# Page\n\n## Two words: `code`\n\n![ok](a.png) [ok](page.md#two-words-code) [web](https://example.com/x)\n"
        "```bash\n[not a link](missing_in_code.md)\npython tools/train.py\n```\n"
        "<img src=\"missing.png\">\n[bad](../docs/nothere.md) [bad anchor](page.md#three-words)\n"
        "python tools/missing.py and tools/train.py\n")
    (tmp_path / "README.md").write_text("[docs](docs/page.md) ![pic](docs/a.png) [up](../outside.md)\n")
    files = doc_files(tmp_path)
    assert broken_links(files, tmp_path) == [
        "README.md:1: link '../outside.md': no file '../outside.md' next to README.md",
        "docs/page.md:10: link 'missing.png': no file 'missing.png' next to docs/page.md",
        "docs/page.md:11: link '../docs/nothere.md': no file '../docs/nothere.md' next to docs/page.md",
        "docs/page.md:11: link 'page.md#three-words': no heading with anchor #three-words in docs/page.md",
    ]
    assert missing_tools(files, tmp_path) == ["docs/page.md:12: tools/missing.py does not exist"]
