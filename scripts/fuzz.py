#!/usr/bin/env python3
"""Long fuzz run (issue 8): many seeded cases of tests/fuzzing.py through convert.

    python3 scripts/fuzz.py            # 2,000 cases (pytest tests/test_fuzz.py --fuzz-long)
    python3 scripts/fuzz.py 5000       # any number of cases

Each case must end with no traceback, no exit 1, only finite volumes with sidecars, the input
unchanged and no temporary file left; the first problems are printed with their seeds and
mutations, so any case can be replayed with tests/fuzzing.make_case(folder, seed).
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    n = sys.argv[1] if len(sys.argv) > 1 else None
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            os.path.join(ROOT, "tests", "test_fuzz.py")]
    args += ["--fuzz-cases", n] if n else ["--fuzz-long"]
    return subprocess.call(args, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
