"""Every ```python block of README.md and docs/*.md runs, and every relative link resolves.

The blocks of one page run in order in one namespace (a page reads like one session), in a
fresh temporary folder laid out as a clone's root and as its ``examples/data/`` at once: it holds
``examples/data/decoder.ckpt`` (what README.md loads from a clone's root) and ``decoder.ckpt`` (what
the guide's pages load, run from ``examples/data/``), and a link ``tests`` to the repository's ``tests``
folder, so that pages read ``tests/data/...`` as a user in the repository root would. A traceback
names the page and its line. A block that is only a signature is not marked ``python`` (it cannot run).

A block that imports an optional package that is not installed (torch, jax, flax, keras, ...,
or the engine modules that need them) is skipped, and so is every later block of its page that
reads a name only a skipped block defines; the other blocks still run, and the test then skips
with the list of what did not run and why.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path
from typing import List, NamedTuple, Set, Tuple

import numpy as np
import pytest

from conftest import GOLDEN

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
PYTHON_TAGS = {"python", "py", "python3"}
# Packages a page may need that `pip install -e .` does not bring.
OPTIONAL = {
    "torch",
    "jax",
    "flax",
    "optax",
    "keras",
    "tensorflow",
    "matplotlib",
    "safetensors",
    "ml_dtypes",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "convtranspose.torch",
    "convtranspose.jax",
    "convtranspose.flax",
}
# The files the pages name, shipped for users in examples/data/ (copies of tests/data/ckpt files).
EXAMPLE_DATA = ROOT / "examples" / "data"
CKPT_FILES = ("decoder.ckpt", "decoder_fp16.ckpt", "decoder.safetensors", "expected.npz")


class Block(NamedTuple):
    page: Path
    line: int  # 1-based line of the first code line
    lang: str
    code: str


_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")


def blocks(page: Path) -> List[Block]:
    """The fenced code blocks of a Markdown page (CommonMark fences, not indented code)."""
    found, lines = [], page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, indent = match["fence"], len(match["indent"])
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not re.match(rf"^ {{0,3}}{fence[0]}{{{len(fence)},}}\s*$", lines[i]):
            # a fence indented by n spaces strips up to n spaces from its lines (CommonMark)
            line = lines[i]
            strip = len(line) - len(line.lstrip(" "))
            body.append(line[min(indent, strip) :])
            i += 1
        found.append(Block(page, start + 1, match["info"].lower(), "\n".join(body) + "\n"))
        i += 1
    return found


def python_blocks(page: Path) -> List[Block]:
    return [b for b in blocks(page) if b.lang in PYTHON_TAGS]


def _imported(code: str) -> List[str]:
    names = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _missing_optional(code: str) -> List[str]:
    missing = []
    for name in _imported(code):
        parts = name.split(".")
        for depth in (1, 2):
            candidate = ".".join(parts[:depth])
            if candidate in OPTIONAL and candidate not in missing:
                try:
                    found = importlib.util.find_spec(candidate) is not None
                except ImportError:  # the parent package itself is missing
                    found = False
                if not found:
                    missing.append(candidate)
    return missing


def _label(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.fixture
def page_folder(tmp_path, monkeypatch):
    """A temporary working folder holding examples/data's files (also under examples/data/), a link to
    the repository's tests folder, and global state restored."""
    (tmp_path / "examples" / "data").mkdir(parents=True)
    for name in CKPT_FILES:
        shutil.copy(EXAMPLE_DATA / name, tmp_path / name)
        shutil.copy(EXAMPLE_DATA / name, tmp_path / "examples" / "data" / name)
    # Pages read the test data as a user in the repository root would: tests/data/networks/...
    (tmp_path / "tests").symlink_to(ROOT / "tests", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    from convtranspose import initializer

    monkeypatch.setattr(initializer, "_rng", initializer._rng)  # undo a ct.set_seed() of a page
    numpy_state = np.random.get_state()
    environ = dict(os.environ)
    torch_state = sys.modules["torch"].random.get_rng_state() if "torch" in sys.modules else None
    jax_x64 = None
    if "jax" in sys.modules:
        jax_x64 = sys.modules["jax"].config.jax_enable_x64
    yield tmp_path
    np.random.set_state(numpy_state)
    os.environ.clear()
    os.environ.update(environ)
    if torch_state is not None:  # a page's torch.manual_seed must not reach later tests
        sys.modules["torch"].random.set_rng_state(torch_state)
    if "jax" in sys.modules:
        sys.modules["jax"].config.update("jax_enable_x64", bool(jax_x64))


def _names(code: str) -> Tuple[Set[str], Set[str]]:
    """``(bound, read)``: the names a block binds and the names it reads."""
    bound, read = set(), set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return bound, read


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=_label)
def test_page_code_runs(page, page_folder):
    code_blocks = python_blocks(page)
    namespace = {"__name__": "__docs__"}
    skipped, unavailable = [], set()  # names only a skipped block would have defined
    for block in code_blocks:
        bound, read = _names(block.code)
        missing = _missing_optional(block.code)
        needs = sorted((read - bound) & unavailable)
        if missing or needs:
            unavailable |= bound
            why = (
                f"needs {', '.join(missing)} (not installed)"
                if missing
                else f"uses {', '.join(needs)} from a skipped block"
            )
            skipped.append(f"line {block.line} {why}")
            continue
        unavailable -= bound
        # Leading newlines put the page's line numbers into any traceback.
        compiled = compile("\n" * (block.line - 1) + block.code, str(page), "exec")
        exec(compiled, namespace)
    if skipped:
        pytest.skip(
            f"{_label(page)}: ran {len(code_blocks) - len(skipped)} of {len(code_blocks)} python blocks; "
            f"skipped {'; '.join(skipped)}"
        )


def test_pages_have_python_blocks():
    """The extraction finds the blocks (a broken fence pattern would make the test above vacuous)."""
    counts = {_label(p): len(python_blocks(p)) for p in PAGES}
    assert counts["README.md"] >= 2, counts
    assert len(PAGES) >= 7, f"expected README.md and six docs pages, found {sorted(counts)}"
    assert sum(counts.values()) >= 20, counts


def test_python_blocks_parse():
    """Each python block is complete Python by itself (a signature with ``...`` is not)."""
    for page in PAGES:
        for block in python_blocks(page):
            try:
                ast.parse(block.code)
            except SyntaxError as exc:
                pytest.fail(
                    f"{_label(page)}:{block.line + (exc.lineno or 1) - 1}: a python block that does not "
                    f"parse ({exc.msg}); mark a signature block as text, not python"
                )


_LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")


def anchors(page: Path) -> set:
    """The anchors GitHub gives the headings of a page (lower case, punctuation dropped, spaces
    to hyphens, ``-1``, ``-2`` for repeats); headings inside code blocks do not count."""
    found, seen, fence = set(), {}, None
    for line in page.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^ {0,3}(`{3,}|~{3,})", line)
        if match:
            fence = None if fence and match[1].startswith(fence) else (fence or match[1])
            continue
        heading = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fence or not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading[1].lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_relative_links_resolve():
    """Links and images to files of the repository point at files (and headings) that exist."""
    broken = []
    for page in PAGES:
        # an HTML comment (a placeholder GitHub does not show) is blanked, keeping line numbers
        text = re.sub(
            r"<!--.*?-->", lambda m: re.sub(r"[^\n]", " ", m[0]), page.read_text(encoding="utf-8"), flags=re.S
        )
        for match in _LINK.finditer(text):
            target = match["target"]
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # a URL
            file_part, _, anchor = target.partition("#")
            path = (page.parent / file_part).resolve() if file_part else page
            line = text[: match.start()].count("\n") + 1
            if not path.exists():
                broken.append(f"{_label(page)}:{line}: {target} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{_label(page)}:{line}: {target} (no such heading in {path.name})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_anchor_slugs_follow_github():
    page_text = "# Title\n## 4. The bias, then `output_padding`: rows\n```\n# not a heading\n```\n## Title\n"
    assert anchors_of(page_text) == {"title", "4-the-bias-then-output_padding-rows", "title-1"}


def anchors_of(text: str) -> set:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "page.md"
        path.write_text(text, encoding="utf-8")
        return anchors(path)


def test_every_figure_is_used_and_drawn_by_the_script():
    """docs/figures holds exactly the figures scripts/make_figures.py draws, and a page shows each."""
    figures = ROOT / "docs" / "figures"
    script = (ROOT / "scripts" / "make_figures.py").read_text(encoding="utf-8")
    drawn = set(re.findall(r'^    "(\w+)": fig_\w+,$', script, re.M))
    assert drawn, "no FIGURES table found in scripts/make_figures.py"
    on_disk = {p.stem for p in figures.glob("*.png")} - {"performance"}  # the benchmark plot: bench.py
    assert on_disk == drawn, f"docs/figures {sorted(on_disk)} != drawn by the script {sorted(drawn)}"
    shown = "".join(p.read_text(encoding="utf-8") for p in PAGES)
    unused = [name for name in sorted(drawn) if f"figures/{name}.png" not in shown]
    assert not unused, f"figures no page shows: {unused}"


def test_block_extraction_handles_fences(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n```python\nx = 1\n```\n\n````\n```python\nnot code\n```\n````\n"
        "~~~py\ny = x + 1\n~~~\n```text\nsignature(a, b=1, *, c)\n```\n",
        encoding="utf-8",
    )
    found = blocks(page)
    assert [(b.lang, b.line, b.code) for b in found] == [
        ("python", 3, "x = 1\n"),
        ("", 7, "```python\nnot code\n```\n"),
        ("py", 12, "y = x + 1\n"),
        ("text", 15, "signature(a, b=1, *, c)\n"),
    ]
    assert [b.code for b in python_blocks(page)] == ["x = 1\n", "y = x + 1\n"]


def test_missing_optional_module_is_detected():
    assert _missing_optional("import numpy as np\nimport convtranspose") == []
    assert _missing_optional("import keras_but_not_really") == []  # not optional: let it fail
    assert _missing_optional("from convtranspose.not_an_engine import x") == []
    if importlib.util.find_spec("no_such_optional_pkg") is None:
        OPTIONAL.add("no_such_optional_pkg")
        try:
            assert _missing_optional("import no_such_optional_pkg.sub") == ["no_such_optional_pkg"]
        finally:
            OPTIONAL.discard("no_such_optional_pkg")


def _load_demo():
    spec = importlib.util.spec_from_file_location("demo_example", ROOT / "examples" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_writes_the_pad_mode_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "modes.png"
    _load_demo().main(["--out", str(out)])
    printed = capsys.readouterr().out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"written to {out}" in printed


def test_demo_without_matplotlib_says_how_to_get_the_figure(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "modes.png"
    _load_demo().main(["--out", str(out)])
    printed = capsys.readouterr().out
    assert not out.exists()
    assert "pip install -e '.[demo]'" in printed
    assert "(1, 64, 19, 53)" in printed  # the rest of the demo still ran


def test_demo_figure_data_follows_the_pad_modes():
    image, bias, outputs = _load_demo().pad_mode_outputs()
    shapes = [out.shape for _, out in outputs]
    assert shapes == [(8, 8), (9, 9), (8, 8)]
    padded = outputs[2][1]
    assert (padded[-1] == 0).all() and (padded[:, -1] == 0).all()  # output_padding: exact zeros
    assert np.isclose(padded[:-1, :-1].min(), bias)  # the window holds the bias


def test_printed_inspect_table_is_what_the_command_prints(page_folder, capsys):
    """from-mindspore.md shows `python -m convtranspose.ckpt inspect decoder.ckpt`: the real output."""
    from convtranspose import ckpt

    assert ckpt.main(["inspect", "decoder.ckpt"]) == 0
    printed = capsys.readouterr().out
    shown = [b.code for b in blocks(ROOT / "docs" / "from-mindspore.md") if b.code.startswith("name ")]
    assert shown == [printed], f"docs/from-mindspore.md shows\n{shown}\nbut the command prints\n{printed}"


@pytest.mark.parametrize("name", CKPT_FILES)
def test_example_data_are_the_recorded_files(name):
    """examples/data/ ships copies of MindSpore's files in tests/data/ckpt: the same bytes."""
    assert (EXAMPLE_DATA / name).read_bytes() == (GOLDEN / "ckpt" / name).read_bytes()


def test_readme_loads_the_shipped_checkpoint_from_the_clone_root():
    """The README's checkpoint block names a file that a clone holds at that path."""
    code = "".join(b.code for b in python_blocks(ROOT / "README.md"))
    named = re.findall(r'ckpt\.load\("([^"]+)"\)', code)
    assert named and all((ROOT / path).is_file() for path in named), named
