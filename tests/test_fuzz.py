"""Issue 8: a seeded fuzz test over small synthetic series (tests/fuzzing.py mutates them).

Every case must end with no traceback, an exit code other than 1, only finite volumes, each
with a sidecar whose findings explain any departure from a plain stack, the input unchanged
and no temporary file in OUTDIR.  CI runs a seeded subset in-process (plus a few through the
real command line); ``pytest tests/test_fuzz.py --fuzz-long`` (or scripts/fuzz.py) runs 2,000.
"""

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from dicomrecon.cli import app
from fuzzing import check_run, make_case, tree_hash

pytestmark = pytest.mark.filterwarnings("ignore")

CI_CASES, LONG_CASES, CLI_CASES = 200, 2000, 5


def _n_cases(config) -> int:
    return config.getoption("--fuzz-cases") or (LONG_CASES if config.getoption("--fuzz-long")
                                                else CI_CASES)


def _one(tmp, seed, invoke) -> list:
    case = os.path.join(tmp, f"case{seed}")
    src, done = make_case(case, seed)
    before = tree_hash(src)
    out = os.path.join(case, "out")
    args = ["convert", src, "-o", out, "-f", ["nii.gz", "nrrd", "mha", "nii"][seed % 4]]
    if seed % 5 == 0:
        args += ["--4d"] if seed % 4 in (0, 3) else ["--tilt", "preserve"]
    code, output = invoke(args)
    problems = check_run(code, output, out)
    if tree_hash(src) != before:
        problems.append("the input changed")
    return [f"seed {seed} ({'; '.join(done)}): {p}" for p in problems]


def _api(args):
    """convert() as the CLI runs it, without typer's per-call option parsing (the fast path):
    the exit code is the CLI's rule, any other exception is the CLI's exit 1."""
    import traceback

    from dicomrecon.conversion import convert
    from dicomrecon.errors import DicomReconError
    from dicomrecon.plan import Policy
    src, out, fmt = args[1], args[3], args[5]
    policy = Policy(merge_4d="--4d" in args, tilt="preserve" if "--tilt" in args else "resample")
    try:
        return int(convert(src, out, fmt=fmt, policy=policy).exit_code), ""
    except DicomReconError as exc:
        return int(exc.exit_code), str(exc)
    except Exception:
        return 1, traceback.format_exc()


def _cli_runner(args):
    r = CliRunner().invoke(app, args)
    return r.exit_code, r.output + (repr(r.exception) if r.exit_code == 1 else "")


def _subprocess(args):
    p = subprocess.run([sys.executable, "-m", "dicomrecon.cli", *args], capture_output=True,
                       text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def test_fuzz_in_process(tmp_path, request):
    problems = []
    for seed in range(_n_cases(request.config)):
        problems += _one(str(tmp_path), seed, _cli_runner if seed % 10 == 0 else _api)
        if seed % 50 == 49:
            subprocess.run(["rm", "-rf", *[str(p) for p in tmp_path.iterdir()]])
    assert not problems, "\n".join(problems[:20]) + f"\n({len(problems)} problem(s))"


def test_fuzz_through_the_command_line(tmp_path):
    problems = []
    for seed in range(100_000, 100_000 + CLI_CASES):
        problems += _one(str(tmp_path), seed, _subprocess)
    assert not problems, "\n".join(problems)
