"""What the README and docs/ restate from the code (reason codes and their order, the
package's modules, the config keys) agrees with the code, and every relative link leads
somewhere."""

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

import embedpatch
from embedpatch.config import config_reference
from embedpatch.filter.stage import CHECK_ORDER
from embedpatch.reasons import RoiReason
from helpers.project import ROOT

DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
CODE = re.compile(r"`([a-z0-9_]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
README_LIMIT = 25_000


def section(page: Path, title: str) -> str:
    """The page's text from the heading `title` to the next heading."""
    text = page.read_text()
    start = text.index(f"\n## {title}\n")
    return text[start : text.index("\n#", start + 1)]


def test_filter_reasons_are_listed_in_the_order_the_filter_checks():
    text = section(DOCS / "stages.md", "Stage 1: metadata filtering")
    listing = text[text.index("in this order:") :].split("\n\n")[1]
    codes = [code for code in CODE.findall(listing) if code in set(CHECK_ORDER)]
    assert codes == [reason.value for reason in CHECK_ORDER]


def test_roi_reason_table_lists_every_code_in_the_code_order():
    rows = section(DOCS / "stages.md", "Stage 2: ROI parsing and validation").splitlines()
    table = [line.split("|")[1] for line in rows if line.startswith("| `")]
    codes = [code for cell in table for code in CODE.findall(cell)]
    assert codes == [reason.value for reason in RoiReason]


def package_modules() -> set[str]:
    """Every module of the package as the table names it: `vocab`, `io/`, `io/atomic`."""
    package = Path(embedpatch.__file__).parent
    found = set()
    for path in package.rglob("*.py"):
        relative = path.relative_to(package)
        if relative.name == "__init__.py":
            if relative.parent != Path():
                found.add(f"{relative.parent.as_posix()}/")
        else:
            found.add(relative.with_suffix("").as_posix())
    return found


def test_module_table_lists_every_module_of_the_package():
    """A newcomer finds each module in the table, and the table names no ghost."""
    text = section(DOCS / "development.md", "Where each concept lives")
    cells = [line.split("|")[1] for line in text.splitlines() if line.startswith("| `")]
    listed = {name for cell in cells for name in re.findall(r"`([^`]+)`", cell)}
    assert {name for name in listed if not name.endswith(".yaml")} == package_modules()


def test_every_package_folder_says_what_it_owns_and_stays_small():
    package = Path(embedpatch.__file__).parent
    for init in package.glob("*/__init__.py"):
        modules = [path for path in init.parent.glob("*.py") if path.name != "__init__.py"]
        assert len(modules) <= 15, init.parent.name
        docstring = init.read_text().lstrip()
        assert docstring.startswith('"""'), f"{init} has no docstring"
        for module in modules:
            assert f"`{module.stem}`" in docstring, f"{init} does not name {module.stem}"


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_bytes()) <= README_LIMIT


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_resolves(page):
    text = page.read_text()
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (page.parent / unquote(path)).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} leads nowhere"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name}: no heading #{anchor} in {path}"


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, spaces to '-', punctuation gone."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_the_configuration_page_is_generated_from_the_schema():
    """Regenerate it with `make docs` when the schema changes."""
    assert (DOCS / "configuration.md").read_text() == config_reference()
