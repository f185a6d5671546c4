#!/usr/bin/env python3
"""Fails when modules of one crate import each other in a circle.

For every crate under the workspace (a directory with Cargo.toml and src/), each source file is
a module (src/lib.rs the crate root, src/a/mod.rs and src/a.rs module `a`, src/a/b.rs `a::b`).
An edge A -> B is any path in A's code, outside its inline `#[cfg(test)] mod tests`, that names
B through `crate::`, `super::` or `self::` (and, in a parent, a child by its bare name). Edges
to the crate root are ignored: lib.rs only declares and re-exports. Any cycle is printed and
the exit status is 1.
"""
import re
import sys
from pathlib import Path

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+|::\{)")


def module_of(src: Path, file: Path) -> tuple:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts and parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def strip_tests(text: str) -> str:
    """Drops inline test modules (`#[cfg(test)]` followed by `mod NAME {`) with their braces."""
    out, i = [], 0
    marker = re.compile(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{")
    while True:
        m = marker.search(text, i)
        if not m:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i : m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j


def strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", text)


def paths_of(text: str):
    """Each `crate::`/`super::`/`self::` path as (base, names); a group `base::a::{b, c::d}`
    gives one path per member."""
    for m in PATH.finditer(text):
        base, rest = m.group(1), m.group(2)
        names = [n for n in rest.split("::") if n and n != "{"]
        if not rest.endswith("{"):
            yield base, names
            continue
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        for member in re.split(r"[,\s]+", re.sub(r"\{[^{}]*\}", "", text[m.end() : j - 1])):
            member = member.split(" as ")[0].strip()
            yield base, names + [n for n in member.split("::") if n and n != "self"]


def edges_of(module: tuple, text: str, modules: set, children: set) -> set:
    found = set()
    for base, names in paths_of(text):
        if base == "crate":
            start = ()
        elif base == "super":
            start = module[:-1]
            while names and names[0] == "super":
                start, names = start[:-1], names[1:]
        else:
            start = module
        target = start
        for name in names:
            if target + (name,) in modules:
                target = target + (name,)
            else:
                break
        if target != module and target != ():
            found.add(target)
    for child in children:
        if re.search(r"\b" + re.escape(child[-1]) + r"::", text):
            found.add(child)
    return found


def cycles(root: Path) -> list:
    problems = []
    for cargo in sorted(root.glob("*/Cargo.toml")):
        src = cargo.parent / "src"
        if not src.is_dir():
            continue
        files = {module_of(src, f): f for f in src.rglob("*.rs") if "bin" not in f.relative_to(src).parts}
        modules = set(files)
        graph = {}
        for module, file in files.items():
            text = strip_comments(strip_tests(file.read_text()))
            children = {m for m in modules if len(m) == len(module) + 1 and m[: len(module)] == module}
            graph[module] = edges_of(module, text, modules, children)
        # Depth-first search for a back edge.
        state, stack = {}, []

        def visit(node):
            state[node] = 1
            stack.append(node)
            for nxt in sorted(graph.get(node, ())):
                if state.get(nxt) == 1:
                    loop = stack[stack.index(nxt) :] + [nxt]
                    problems.append(f"{cargo.parent.name}: " + " -> ".join("::".join(m) or "crate" for m in loop))
                elif state.get(nxt) is None:
                    visit(nxt)
            stack.pop()
            state[node] = 2

        for node in sorted(graph):
            if state.get(node) is None:
                visit(node)
    return problems


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    found = cycles(root)
    for line in found:
        print("import circle:", line)
    sys.exit(1 if found else 0)
