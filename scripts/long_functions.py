"""List the functions of the dicomrecon package longer than a limit (default 80 lines).

    python3 scripts/long_functions.py [LIMIT]

Exit code 1 when any is found, so CI or a test can hold the line (issue 14: no function in the
package over about 80 lines)."""

from __future__ import annotations

import ast
import pathlib
import sys

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "dicomrecon"


def long_functions(limit: int = 80, root: pathlib.Path = PACKAGE) -> list:
    """[(lines, "path:line name")] of every function or method over ``limit`` lines."""
    out = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    out.append((n, f"{path.relative_to(root.parent)}:{node.lineno} {node.name}"))
    return sorted(out, reverse=True)


if __name__ == "__main__":
    found = long_functions(int(sys.argv[1]) if len(sys.argv) > 1 else 80)
    for n, where in found:
        print(f"{n:4d}  {where}")
    sys.exit(1 if found else 0)
