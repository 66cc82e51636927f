"""The documentation is executable: every code block and command in docs/ and README.md runs.

What runs, per Markdown file (docs/**/*.md and README.md), in document order, in ONE fresh
Python process whose working directory is a temporary folder (so runs never land in the repo):

* every ```python block, all blocks of a file sharing one namespace, as a reader pasting them
  into one REPL session would;
* every line of a ```bash block that starts with ``scratchgan ``, ``python -m scratchgan `` (run
  through ``scratchgan.cli.main``, the console script's entry point) or ``python PATH.py ...``
  where PATH.py is a file of this repository (run as ``__main__`` with that argv). Other lines
  (``pip install ...``, comments) are shown to the reader but not run.

Markers: an HTML comment on the line before a fence (invisible on GitHub) qualifies the block.

    <!-- not-run: REASON -->                the block is never run; REASON is required
    <!-- requires: gpu -->                  run only where CuPy sees a CUDA GPU
    <!-- requires: scratchgan COMMAND -->   run only once the CLI has that subcommand
    <!-- requires: mnist-test -->           run only where ../shared/data holds the MNIST test set
                                            (the child then gets SCRATCHGAN_DATA pointing there)

README.md shows the real, full-length commands (10,000-step runs), so there the test checks that
they parse and run end to end, not how long they take: its ``scratchgan train`` lines run with
``--steps`` capped at README_STEP_CAP, and the ``scratchgan bench`` lines are not run (minutes of
timing, and docs/performance.md owns the benchmark).

The child process gets OPENBLAS/OMP/MKL_NUM_THREADS=1: on a small, busy machine a multi-threaded
BLAS oversubscribes the cores and the tiny GEMMs of the docs run 10x slower. The docs teach on
NumPy, so SCRATCHGAN_BACKEND is unset for the child (GPU blocks select CuPy explicitly).

Also checked: every relative link in docs/ and README.md resolves; heading anchors exist;
line anchors (#L10 or #L10-L20) lie inside the file, and the link text holds at least one code
span, each of which (or, for a dotted name such as ``Dense.backward``, its last part) appears in
those lines, so a link that drifts when the code moves fails here; every ``docs/*.md`` named in the
package exists; the docstring examples (``>>>``) of the package pass; the figure script runs.
"""
from __future__ import annotations

import argparse
import doctest
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PACKAGE = ROOT / "scratchgan"

README_STEP_CAP = 4          # README train commands: --steps min(N, 4), or --steps 2 when absent
README_DEFAULT_STEPS = 2
README_NOT_RUN = {"bench": "times several models and every DCGAN layer: minutes; docs/performance.md covers bench"}
MAX_NOT_RUN_MARKERS = 4      # exceptions stay few
WRITTEN_ELSEWHERE = {"docs/performance.md", "docs/results.md"}   # pages other authors own: skipped while absent

FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*(not-run|requires)\s*:\s*(.*?)\s*-->\s*$")
LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^()\s]+)\)")
LINE_ANCHOR = re.compile(r"^L(\d+)(?:-L(\d+))?$")
SHELL_OPERATORS = {"&&", "||", "|", ";", ">", ">>", "<", "&"}


def doc_files():
    return sorted(DOCS.rglob("*.md")) + ([README] if README.exists() else [])


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ---------------------------------------------------------------------------- parsing
def parse_blocks(path: Path):
    """[(language, first_line_number_of_body, body_text, marker or None)] outside other fences."""
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(2).lower(), i + 1
        j = start
        while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
            j += 1
        if j == len(lines):
            raise AssertionError(f"{rel(path)}:{i + 1}: unterminated code fence")
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = MARKER.match(lines[k]) if k >= 0 else None
        blocks.append((lang, start + 1, "\n".join(lines[start:j]), marker.groups() if marker else None))
        i = j + 1
    return blocks


def command_of(line: str, where: str):
    """('cli', argv) / ('script', [path, *argv]) for a line the test runs, else None."""
    tokens = shlex.split(line, comments=True)
    if not tokens:
        return None
    if tokens[0] == "scratchgan":
        argv = tokens[1:]
    elif tokens[:3] == ["python", "-m", "scratchgan"]:
        argv = tokens[3:]
    elif tokens[0] == "python" and len(tokens) > 1 and tokens[1].endswith(".py") and (ROOT / tokens[1]).is_file():
        argv = None
    else:
        return None
    if SHELL_OPERATORS & set(tokens):
        raise AssertionError(f"{where}: one command per line, without shell operators: {line!r}")
    if argv is None:
        return "script", [str(ROOT / tokens[1])] + tokens[2:]
    return "cli", argv


def readme_smoke(argv, where):
    """README commands are full-length: cap the training steps; None to leave the line out."""
    if argv and argv[0] in README_NOT_RUN:
        return None
    if argv and argv[0] == "train":
        argv = list(argv)
        if "--steps" in argv:
            i = argv.index("--steps")
            argv[i + 1] = str(min(int(argv[i + 1]), README_STEP_CAP))
        else:
            argv += ["--steps", str(README_DEFAULT_STEPS)]
    return argv


def has_gpu() -> bool:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def cli_commands() -> set:
    from scratchgan.cli import build_parser
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def skip_reason(marker, where):
    """None to run the block, else why not."""
    if marker is None:
        return None
    kind, value = marker
    if kind == "not-run":
        assert value, f"{where}: <!-- not-run: REASON --> needs a reason"
        return f"not-run: {value}"
    if value == "gpu":
        return None if has_gpu() else "requires a CUDA GPU with CuPy"
    if value == "mnist-test":
        return None if SHARED_DATA.is_dir() else "needs the MNIST test set (../shared/data), absent here"
    if value.startswith("scratchgan "):
        command = value.split()[1]
        return None if command in cli_commands() else f"the CLI has no '{command}' command yet"
    raise AssertionError(f"{where}: unknown requirement {value!r} (use 'gpu', 'mnist-test' or 'scratchgan COMMAND')")


def plan_for(path: Path):
    """The steps of one Markdown file, in document order, and the ones left out (with reasons)."""
    steps, skipped = [], []
    for lang, line, body, marker in parse_blocks(path):
        where = f"{rel(path)}:{line}"
        if lang not in ("python", "bash", "sh", "shell", "console"):
            continue
        reason = skip_reason(marker, where)
        if reason:
            skipped.append(f"{where}: {reason}")
            continue
        if lang == "python":
            steps.append({"kind": "python", "where": where, "file": str(path), "line": line, "source": body})
            continue
        logical, first = "", None
        for n, text in enumerate(body.split("\n")):
            first = line + n if first is None else first
            if text.rstrip().endswith("\\"):
                logical += text.rstrip()[:-1] + " "
                continue
            logical += text
            here = f"{rel(path)}:{first}"
            command = command_of(logical.strip(), here)
            if command is not None:
                kind, argv = command
                if path == README and kind == "cli":
                    smoke = readme_smoke(argv, here)
                    if smoke is None:
                        skipped.append(f"{here}: README, {README_NOT_RUN[argv[0]]}")
                        argv = None
                    else:
                        argv = smoke
                if argv is not None:
                    steps.append({"kind": kind, "where": here, "argv": argv, "text": logical.strip()})
            logical, first = "", None
    return steps, skipped


# ---------------------------------------------------------------------------- the child process
def run_plan(plan_path: str) -> int:
    """Executed in the child: run every step in order; report the first failure and stop."""
    sys.path.insert(0, str(ROOT))
    import runpy

    import numpy as np

    from scratchgan import backend
    from scratchgan.cli import main as cli_main

    steps = json.loads(Path(plan_path).read_text())
    namespace = {"__name__": "__docs__"}
    for step in steps:
        print(f"--- {step['where']}: {step['kind']} {' '.join(step.get('argv', []))}", flush=True)
        try:
            if step["kind"] == "python":
                # Pad with newlines so tracebacks point at the Markdown file's own line numbers.
                code = compile("\n" * (step["line"] - 1) + step["source"], step["file"], "exec")
                exec(code, namespace)
            elif step["kind"] == "cli":
                try:
                    rc = cli_main(step["argv"])
                except SystemExit as exc:
                    rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else exc.code)
                if rc not in (0, None):
                    raise RuntimeError(f"command exited with {rc!r}: {step['text']}")
            else:
                saved = sys.argv
                sys.argv = list(step["argv"])
                try:
                    runpy.run_path(step["argv"][0], run_name="__main__")
                except SystemExit as exc:
                    if exc.code not in (0, None):
                        raise RuntimeError(f"script exited with {exc.code!r}: {step['text']}") from None
                finally:
                    sys.argv = saved
        except BaseException:
            print(f"DOCS-FAILURE at {step['where']}", flush=True)
            traceback.print_exc()
            return 1
        finally:
            # A command may switch the backend or the default dtype (--backend, --dtype): reset for what follows.
            backend.use("numpy")
            backend.set_default_dtype(np.float32)
    print(f"DOCS-OK {len(steps)} steps", flush=True)
    return 0


# ---------------------------------------------------------------------------- tests
SHARED_DATA = ROOT.parent / "shared" / "data"


def _child_env():
    env = dict(os.environ)
    if SHARED_DATA.is_dir():  # where the docs say DIR (the MNIST test set), the child finds it
        env["SCRATCHGAN_DATA"] = str(SHARED_DATA)
    env.pop("SCRATCHGAN_BACKEND", None)
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg",
               PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return env


@pytest.mark.slow
@pytest.mark.parametrize("path", doc_files(), ids=rel)
def test_code_blocks_and_commands_run(path, tmp_path):
    steps, skipped = plan_for(path)
    for reason in skipped:
        print("skipped", reason)
    if not steps:
        return
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(steps))
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--run-plan", str(plan)],
                          cwd=work, env=_child_env(), capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "DOCS-OK" in proc.stdout, f"{rel(path)}: a documented step failed\n{out[-8000:]}"


def _headings(path: Path) -> set:
    """GitHub's anchors for the headings of a Markdown file (outside code fences)."""
    slugs, counts, in_fence = set(), {}, False
    for line in path.read_text(encoding="utf-8").split("\n"):
        if FENCE.match(line) or re.match(r"^\s*```\s*$", line):
            in_fence = not in_fence
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_fence or not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).replace("`", "").lower()).replace(" ", "-")
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        slugs.add(slug if n == 0 else f"{slug}-{n}")
    return slugs


def _prose(path: Path) -> str:
    """The file with fenced code blocks blanked out (line numbers kept)."""
    out, in_fence = [], False
    for line in path.read_text(encoding="utf-8").split("\n"):
        fence = bool(FENCE.match(line) or re.match(r"^\s*```\s*$", line))
        out.append("" if in_fence or fence else line)
        if fence:
            in_fence = not in_fence
    return "\n".join(out)


def _links(path: Path):
    for number, line in enumerate(_prose(path).split("\n"), 1):
        for m in LINK.finditer(line):
            yield number, m.group(2), m.group(3)


def _link_problems(path: Path) -> list:
    problems = []
    for number, text, target in _links(path):
        where = f"{rel(path)}:{number}: [{text}]({target})"
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):          # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{where}: {file_part} does not exist")
            continue
        if not anchor:
            continue
        line_anchor = LINE_ANCHOR.match(anchor)
        if dest.suffix == ".md" and not line_anchor:
            if anchor not in _headings(dest):
                problems.append(f"{where}: no heading with anchor #{anchor} in {dest.name}")
            continue
        if not line_anchor:
            problems.append(f"{where}: unknown anchor #{anchor} (use #Lx or #Lx-Ly)")
            continue
        lines = dest.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines = lines[:-1]
        start = int(line_anchor.group(1))
        end = int(line_anchor.group(2) or start)
        if not 1 <= start <= end <= len(lines):
            problems.append(f"{where}: lines {start}-{end} outside {dest.name} ({len(lines)} lines)")
            continue
        snippets = re.findall(r"`([^`]+)`", text)
        if not snippets:
            problems.append(f"{where}: a line link needs a `code span` in its text, naming code in those lines")
        span = "\n".join(lines[start - 1:end])
        for snippet in snippets:
            name = re.fullmatch(r"([\w.]+)(\(.*\))?", snippet)
            if snippet not in span and not (name and name.group(1).split(".")[-1] in span):
                problems.append(f"{where}: `{snippet}` is not in {dest.name} lines {start}-{end} (did the code move? `python tests/fix_doc_links.py` re-anchors)")
    return problems


@pytest.mark.parametrize("path", doc_files(), ids=rel)
def test_links_resolve(path):
    problems = _link_problems(path)
    assert not problems, "broken or stale links:\n" + "\n".join(problems)


def test_markers_are_few_and_explained():
    not_run = []
    for path in doc_files():
        for lang, line, _, marker in parse_blocks(path):
            if marker:
                skip_reason(marker, f"{rel(path)}:{line}")      # raises on a malformed marker
                if marker[0] == "not-run":
                    not_run.append(f"{rel(path)}:{line}")
    assert len(not_run) <= MAX_NOT_RUN_MARKERS, f"too many not-run blocks: {not_run}"


def test_readme_smoke_rewrites():
    assert readme_smoke(["train", "--model", "dcgan"], "") == ["train", "--model", "dcgan", "--steps", "2"]
    assert readme_smoke(["train", "--resume", "--steps", "20000"], "") == ["train", "--resume", "--steps", "4"]
    assert readme_smoke(["bench", "--layers"], "") is None
    assert readme_smoke(["sample", "runs/cgan"], "") == ["sample", "runs/cgan"]
    assert command_of("pip install . && scratchgan train", "") is None
    assert command_of("scratchgan gradcheck   # a comment", "") == ("cli", ["gradcheck"])
    with pytest.raises(AssertionError):
        command_of("scratchgan train | tee log", "")


def test_pages_named_by_the_package_exist():
    missing, pending = [], []
    for source in sorted(PACKAGE.rglob("*.py")):
        for m in re.finditer(r"docs/[\w./-]+\.md", source.read_text(encoding="utf-8")):
            if not (ROOT / m.group(0)).exists():
                (pending if m.group(0) in WRITTEN_ELSEWHERE else missing).append(f"{rel(source)} names {m.group(0)}")
    assert not missing, "\n".join(missing)
    if pending:
        pytest.skip("pages not written yet by their owners: " + "; ".join(pending))


def _modules_with_examples():
    names = []
    for source in sorted(PACKAGE.rglob("*.py")):
        if ">>>" in source.read_text(encoding="utf-8"):
            parts = source.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("module_name", _modules_with_examples())
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0 and result.failed == 0, f"{module_name}: {result.failed} of {result.attempted} failed"


def test_figure_script_regenerates_the_committed_figure(tmp_path):
    committed = DOCS / "figures" / "g_loss_gradients.png"
    assert committed.is_file() and committed.stat().st_size > 10_000
    proc = subprocess.run([sys.executable, str(DOCS / "figures" / "make_figures.py"), "--out", str(tmp_path)],
                          env=_child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    made = tmp_path / "g_loss_gradients.png"
    assert made.is_file() and made.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and made.stat().st_size > 10_000


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="run the steps of one documentation file (used by the tests)")
    p.add_argument("--run-plan", required=True)
    sys.exit(run_plan(p.parse_args().run_plan))
