"""Re-anchor stale #Lx-Ly links in docs/ after code moved (tests/test_docs.py says when).

    python tests/fix_doc_links.py --base REV   (preferred: REV is a commit whose links were right)
    python tests/fix_doc_links.py              (no history: the nearest lines holding the code span)
    python tests/fix_doc_links.py --base REV --moved OLD=NEW ...
                                               (files moved since REV, paths from the repository root: a
                                                link to NEW is carried from REV's link to OLD)

With --base, each link's anchor as it stood in REV's copy of the doc is carried through a line
diff of its target file (REV -> working tree): exact wherever the linked lines themselves did not
change. A link whose lines changed, or that REV's doc did not have, falls back to the search,
which matches a name-only span such as `x.step()` to the nearest line holding `step`: check those.
"""
import difflib
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_docs as td  # noqa: E402

LINK = re.compile(r"\[([^\]]*`[^\]]*)\]\(([^)#\s]+)#L(\d+)(?:-L(\d+))?\)")
ROOT = Path(__file__).resolve().parents[1]
changed = 0


def _at(rev, path: Path):
    """The text of ``path`` in commit ``rev``, or None."""
    try:
        return subprocess.run(["git", "show", f"{rev}:{path.relative_to(ROOT).as_posix()}"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout
    except subprocess.CalledProcessError:
        return None


def _line_map(old: str, new: str) -> dict:
    """{old line number: new line number} for the lines the diff keeps unchanged (1-based)."""
    out = {}
    sm = difflib.SequenceMatcher(None, old.split("\n"), new.split("\n"), autojunk=False)
    for tag, i1, i2, j1, _ in sm.get_opcodes():
        if tag == "equal":
            out.update({i + 1: j1 + (i - i1) + 1 for i in range(i1, i2)})
    return out


def by_diff(rev, moved=None) -> None:
    """Carry every link's anchor in REV's docs through the diff of its target file. ``moved``:
    {old path: new path} (from the root) of files that moved since REV."""
    global changed
    maps = {}
    moved = {(ROOT / old).resolve(): (ROOT / new).resolve() for old, new in (moved or {}).items()}
    moved_back = {new: old for old, new in moved.items()}
    for path in td.doc_files():
        old_doc = _at(rev, path)
        if old_doc is None:
            continue
        old_links = list(LINK.finditer(old_doc))
        text = path.read_text()
        new_links = list(LINK.finditer(text))
        key = lambda m: (m.group(1), (path.parent / m.group(2)).resolve())   # noqa: E731
        old_key = lambda m: (m.group(1), moved.get(key(m)[1], key(m)[1]))   # noqa: E731
        pairs = difflib.SequenceMatcher(None, [old_key(m) for m in old_links], [key(m) for m in new_links],
                                        autojunk=False).get_opcodes()
        edits = []
        for tag, i1, i2, j1, _ in pairs:
            if tag != "equal":
                continue
            for k in range(i2 - i1):
                om, nm = old_links[i1 + k], new_links[j1 + k]
                dest = (path.parent / nm.group(2)).resolve()
                if not dest.exists() or dest.suffix == ".md":
                    continue
                if dest not in maps:
                    old_src = _at(rev, moved_back.get(dest, dest))
                    maps[dest] = _line_map(old_src, dest.read_text()) if old_src is not None else {}
                a, b = int(om.group(3)), int(om.group(4) or om.group(3))
                if a in maps[dest] and b in maps[dest]:
                    na, nb = maps[dest][a], maps[dest][b]
                    anchor = f"#L{na}" if na == nb else f"#L{na}-L{nb}"
                    edits.append((nm.start(), nm.end(), f"[{nm.group(1)}]({nm.group(2)}{anchor})"))
        for start, end, repl in sorted(edits, reverse=True):
            if text[start:end] != repl:
                changed += 1
                text = text[:start] + repl + text[end:]
        path.write_text(text)


def by_search() -> None:
    """Move each link whose lines no longer hold its code span to the nearest lines that do."""
    global changed
    for path in td.doc_files():
        text = path.read_text()

        def fix(m):
            global changed
            label, target, a, b = m.group(1), m.group(2), int(m.group(3)), int(m.group(4) or m.group(3))
            dest = (path.parent / target).resolve()
            if not dest.exists() or dest.suffix == ".md":
                return m.group(0)
            lines = dest.read_text().split("\n")
            snippets = re.findall(r"`([^`]+)`", label)

            def ok(s, e):
                span = "\n".join(lines[s - 1:e])
                for sn in snippets:
                    name = re.fullmatch(r"([\w.]+)(\(.*\))?", sn)
                    if sn not in span and not (name and name.group(1).split(".")[-1] in span):
                        return False
                return True
            if 1 <= a <= b <= len(lines) and ok(a, b):
                return m.group(0)
            width = b - a
            cands = [s for s in range(1, len(lines) + 1) if s + width <= len(lines) and ok(s, s + width)]
            if not cands:
                for w in range(width + 1, width + 7):   # widen: spans up to width + 6
                    cands = [s for s in range(1, len(lines) + 1) if s + w <= len(lines) and ok(s, s + w)]
                    if cands:
                        width = w
                        break
            if not cands:
                print("NOT FOUND", path, m.group(0))
                return m.group(0)
            s = min(cands, key=lambda c: abs(c - a))
            changed += 1
            print("searched", path.name, m.group(0)[:80])
            anchor = f"#L{s}" if width == 0 else f"#L{s}-L{s + width}"
            return f"[{label}]({target}{anchor})"
        new = LINK.sub(fix, text)
        if new != text:
            path.write_text(new)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "--base" and (len(args) == 2 or args[2] == "--moved"):
        pairs = [a.split("=", 1) for a in args[3:]]
        if any(len(p) != 2 for p in pairs):
            sys.exit(__doc__)
        by_diff(args[1], dict(pairs))
    elif args:
        sys.exit(__doc__)
    by_search()
    print("re-anchored", changed)
