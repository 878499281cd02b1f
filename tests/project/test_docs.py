"""What the README restates from the code (reason codes and their order, the package's
modules) agrees with the code."""

import re
from pathlib import Path

import embedpatch
from embedpatch.filter.stage import CHECK_ORDER
from embedpatch.reasons import RoiReason
from helpers.project import ROOT

README = (ROOT / "README.md").read_text()
CODE = re.compile(r"`([a-z0-9_]+)`")


def section(title: str) -> str:
    """The README's text from the heading `title` to the next heading."""
    start = README.index(f"\n### {title}\n")
    return README[start : README.index("\n#", start + 1)]


def test_filter_reasons_are_listed_in_the_order_the_filter_checks():
    text = section("Stage 1: metadata filtering")
    listing = text[text.index("in this order:") :].split("\n\n")[1]
    codes = [code for code in CODE.findall(listing) if code in set(CHECK_ORDER)]
    assert codes == [reason.value for reason in CHECK_ORDER]


def test_roi_reason_table_lists_every_code_in_the_code_order():
    rows = [line for line in section("Stage 2: ROI parsing and validation").splitlines()]
    table = [line.split("|")[1] for line in rows if line.startswith("| `")]
    codes = [code for cell in table for code in CODE.findall(cell)]
    assert codes == [reason.value for reason in RoiReason]


def test_module_table_lists_every_module_of_the_package():
    """A newcomer finds each module in the README's table, and the table names no ghost."""
    package = Path(embedpatch.__file__).parent
    modules = {path.stem for path in package.glob("*.py") if path.stem != "__init__"}
    modules |= {path.parent.name for path in package.glob("*/__init__.py")}
    text = README[README.index("Where each concept lives") :]
    table = [line.split("|")[1] for line in text.splitlines() if line.startswith("| `")]
    listed = {name.removesuffix("/") for cell in table for name in re.findall(r"`([^`]+)`", cell)}
    listed = {name.removesuffix(".py") for name in listed if not name.endswith(".yaml")}
    assert listed == modules
