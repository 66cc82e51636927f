"""Re-anchor stale #Lx-Ly links in docs/ to the nearest lines that hold their code span again.

    python tests/fix_doc_links.py      (after code moved; tests/test_docs.py says when)
"""
import re, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_docs as td
LINK = re.compile(r"\[([^\]]*`[^\]]*)\]\(([^)#\s]+)#L(\d+)(?:-L(\d+))?\)")
changed = 0
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
            # widen: try spans up to width+6
            for w in range(width + 1, width + 7):
                cands = [s for s in range(1, len(lines) + 1) if s + w <= len(lines) and ok(s, s + w)]
                if cands:
                    width = w
                    break
        if not cands:
            print("NOT FOUND", path, m.group(0)); return m.group(0)
        s = min(cands, key=lambda c: abs(c - a))
        changed += 1
        anchor = f"#L{s}" if width == 0 else f"#L{s}-L{s + width}"
        return f"[{label}]({target}{anchor})"
    new = LINK.sub(fix, text)
    if new != text:
        path.write_text(new)
print("re-anchored", changed)
