"""Benchmark: ``grade_many`` against a plain sequential math-verify loop, same corpus, same run.

Hardware: any CPU (figures in the report were taken on 2 cores). Time: ~1 minute for the
default 5,000 pairs, most of it the math-verify baseline. Each timing runs in a fresh process,
so that sympy's caches, warmed by one run, do not speed up the next.

    python benchmarks/grading.py [--n 5000] [--seed 0] [--workers N]

The corpus is built (seeded) from the gold answers in ``shared/data`` (or ``$EGRC_DATA_DIR``):
8 samples per problem, as sampling produces them: a think block (one of three per problem), then
the gold verbatim, a reformatted equivalent (``\\dfrac``, decimals, ``x =``, units, reordered
lists, e-notation as ``\\times 10^{}``) or a wrong answer, sometimes no box at all; identical
responses repeat. The baseline is ``verify(parse("\\boxed{gold}"), parse(response))``. Agreement
is counted on these (non-hostile) pairs; hostile inputs are timed separately, with ``grade_many``
and ``grade`` only (the baseline can hang on them).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import sys
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from egrc_lite import grading  # noqa: E402
from egrc_lite.grading import grade, grade_many, shutdown_pool  # noqa: E402

logger = logging.getLogger("benchmarks.grading")
SETS = ["aime24", "amc23", "amc83", "math500", "minerva", "olympiadbench", "gsm8k"]
FALLBACK_GOLDS = ["42", r"\frac{14}{3}", "1,-2", r"(3,4]", r"90^\circ", "3.83e35", r"\text{Evelyn}",
                  r"2\sqrt{5}", "x=5", r"\begin{pmatrix} -1 \\ 2 \end{pmatrix}", "0.15", "-1./3",
                  r"(1,1), (3,2)", r"f(x)=2 x", r"10,\!080", "62.5%", r"\frac{\sqrt{3}}{3}", "1e-5"]
FILLER = ["Let me compute this carefully.", "Wait, I should double-check the arithmetic.",
          "Alternatively, consider the symmetric case.", "So the expression simplifies.",
          "Hmm, that does not look right; let me redo the step.", "Therefore the value follows."]


def data_dir() -> Path:
    env = os.environ.get("EGRC_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def load_problems() -> list[dict]:
    root, rows = data_dir(), []
    for name in SETS:
        path = root / f"{name}.jsonl"
        if path.is_file():
            with path.open(encoding="utf-8") as fh:
                rows += [dict(json.loads(line), set=name) for line in fh if line.strip()]
    if not rows:
        logger.warning("no data under %s: using %d built-in golds", root, len(FALLBACK_GOLDS))
        rows = [{"id": f"builtin-{i}", "problem": f"Problem {i}.", "answer": g, "set": "builtin"}
                for i, g in enumerate(FALLBACK_GOLDS)]
    return rows


# ------------------------------------------------------------------------------ answer variants
def _as_fraction(gold: str) -> Fraction | None:
    m = re.fullmatch(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}", gold.strip())
    if m:
        return Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1)
    return Fraction(gold) if re.fullmatch(r"-?\d+", gold.strip()) else None


def equivalents(gold: str) -> list[str]:
    """Reformatted answers a model writes for ``gold`` that a good grader must accept."""
    g, out = gold.strip(), []
    frac = _as_fraction(g)
    if frac is not None and frac.denominator == 1:
        n = frac.numerator
        out += [f"{n}.0", f"x = {n}", f"{n} \\text{{ units}}",
                f"{n:,}" if abs(n) >= 1000 else f"0{n}" if n >= 0 else f"{n}.00"]
    elif frac is not None:
        out += [g.replace("\\frac", "\\dfrac"), f"{frac.numerator}/{frac.denominator}"]
        if 10**6 % frac.denominator == 0:
            out.append(f"{float(frac):.6g}")
    m = re.fullmatch(r"(\d+(?:\.\d+)?)e([+-]?\d+)", g)
    if m:
        out += [f"{m.group(1)} \\times 10^{{{int(m.group(2))}}}", f"{m.group(1)}\\cdot10^{{{int(m.group(2))}}}"]
    if "," in g and not g.startswith(("(", "[", "\\left")) and "$" not in g:
        parts = [p.strip() for p in g.split(",")]
        out.append(", ".join(reversed(parts)))
    if g.startswith("(") and g.endswith(")"):
        out.append("\\left" + g[0] + " " + g[1:-1].replace(",", ", ") + " \\right" + g[-1])
    if "^\\circ" in g:
        out.append(g.replace("^\\circ", ""))
    if g.startswith("\\text{") and g.endswith("}"):
        out.append(g[6:-1])
    out.append(g.replace(" ", "") if " " in g else g + " ")
    return out or [g]


def wrongs(gold: str, rng: random.Random) -> list[str]:
    """Plausible wrong answers for ``gold``."""
    g = gold.strip()
    frac = _as_fraction(g)
    if frac is not None:
        return [str(frac + 1) if frac.denominator == 1 else f"\\frac{{{frac.numerator + 1}}}{{{frac.denominator}}}",
                str(frac.numerator * 2)]
    m = re.fullmatch(r"(\d+(?:\.\d+)?)e([+-]?\d+)", g)
    if m:
        return [f"{m.group(1)}e{int(m.group(2)) + 1}", f"{float(m.group(1)) * 1.5:.3g}e{m.group(2)}"]
    if "," in g and not g.startswith(("(", "[")):
        return [g.split(",")[0], g + ", 7"]
    return [g + "+1", f"2({g})" if len(g) < 40 else "0"]


def build_corpus(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` (response, gold) pairs: 8 samples per problem, seeded."""
    rng, problems = random.Random(seed), load_problems()
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:
        row = rng.choice(problems)
        gold, skill = row["answer"], rng.uniform(0.1, 0.9)
        thinks = [f"{row['problem'][:300]}\n" + " ".join(rng.choice(FILLER) for _ in range(rng.randint(3, 12)))
                  + (f"\n{row.get('solution', '')[:400]}" if k == 0 else "") for k in range(3)]
        eq, bad = equivalents(gold), wrongs(gold, rng)
        for _ in range(8):
            u = rng.random()
            answer = gold if u < skill * 0.6 else rng.choice(eq) if u < skill else rng.choice(bad)
            tail = (f"The final answer is $\\boxed{{{answer}}}$." if rng.random() > 0.1
                    else f"So the answer should be {answer}")  # no box: truncated or forgot
            pairs.append((f"<think>\n{rng.choice(thinks)}\n</think>\n\n{tail}", gold))
    return pairs[:n]


def hostile_pairs() -> list[tuple[object, str]]:
    nest = "{" * 100_000 + "}" * 100_000
    return [
        ("\\boxed{" + nest + "}", "1"), (nest, "1"), ("\\boxed{10^{10^{10^{10}}}}", "10"),
        ("\\boxed{2^{2^{2^{2^{2^{2^{2}}}}}}}", "2"), ("\\boxed{(10^{10})!}", "1"), ("\\boxed{99999999!}", "1"),
        ("\\boxed{" + "9" * 200_000 + "}", "9"), ("\\boxed{" + "x+" * 100_000 + "1}", "1"),
        ("\x00\\boxed{\x00}" * 1000, "0"), ("\ud800\\boxed{\udfff}", "1"), (b"\xff\xfe\\boxed{\xc3\x28}", "1"),
        ("\\boxed{\\int_0^{\\infty} e^{-x^2} \\sin(x^{99}) dx}", "1"), ("\\boxed{" * 50_000, "1"),
        ("\\boxed{(9999^{9999})^{9999}}", "1"), ("\\boxed{\\binom{10^{9}}{10^{8}}}", "1"),
        ("\\boxed{" + "\\frac{1}{" * 300 + "2" + "}" * 300 + "}", "0"),
    ]


# ------------------------------------------------------------------------------ main
def baseline(pairs: list[tuple[str, str]]) -> list[bool]:
    from math_verify import parse, verify

    return [bool(verify(parse("\\boxed{" + gold + "}"), parse(response))) for response, gold in pairs]


def measure(mode: str, n: int, seed: int, workers: int | None) -> dict:
    """One timing in this (fresh) process: sympy's caches start cold for every mode."""
    pairs = build_corpus(n, seed)
    import math_verify  # noqa: F401 - the import (~0.7 s) is left out of every timing

    if mode == "warm-pool":  # start the workers first, untimed
        grading.warm_pool(workers)
    t0 = time.perf_counter()
    if mode == "baseline":
        verdicts = baseline(pairs)
    elif mode == "one-by-one":
        verdicts = [grade(r, g) for r, g in pairs]
    else:
        verdicts = grade_many(pairs, workers=workers)
    seconds = time.perf_counter() - t0
    shutdown_pool()
    return {"seconds": seconds, "verdicts": verdicts}


def run_fresh(mode: str, args) -> dict:
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--measure", mode, "--n", str(args.n), "--seed", str(args.seed),
               "--out", str(out)] + (["--workers", str(args.workers)] if args.workers is not None else [])
        subprocess.run(cmd, check=True)
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--measure", choices=["grade_many", "baseline", "warm-pool", "one-by-one"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # hostile inputs log warnings by design
    if args.measure:
        Path(args.out).write_text(json.dumps(measure(args.measure, args.n, args.seed, args.workers)))
        return 0

    pairs = build_corpus(args.n, args.seed)
    extracted = [grading.extract_answer(r) for r, _ in pairs]
    print(f"corpus: {len(pairs)} pairs from {data_dir()}, seed {args.seed}: {len(set(pairs))} distinct "
          f"(response, gold), {len(set(zip(extracted, (g for _, g in pairs), strict=True)))} distinct (answer, gold)")
    res = {mode: run_fresh(mode, args) for mode in ("baseline", "grade_many", "warm-pool", "one-by-one")}
    base, ours, t_base = res["baseline"]["verdicts"], res["grade_many"]["verdicts"], res["baseline"]["seconds"]
    print("each timing in a fresh process (sympy caches cold, math-verify imported beforehand):")
    print(f"  math-verify sequential loop (baseline):        {t_base:7.2f} s")
    labels = {"grade_many": f"grade_many (workers={args.workers or os.cpu_count()}, pool cold)",
              "warm-pool": "grade_many, pool already started", "one-by-one": "grade() one by one"}
    for mode, label in labels.items():
        r = res[mode]
        print(f"  {label:46s} {r['seconds']:7.2f} s  {t_base / r['seconds']:5.1f}x   "
              f"same verdicts as grade_many: {r['verdicts'] == ours}")
    agree = sum(a == b for a, b in zip(ours, base, strict=True))
    print(f"agreement with math-verify: {agree}/{len(pairs)} = {agree / len(pairs):.2%}; "
          f"accuracy: ours {sum(ours) / len(pairs):.1%}, math-verify {sum(base) / len(pairs):.1%}")
    diff = [i for i in range(len(pairs)) if ours[i] != base[i]]
    unboxed = [i for i in diff if extracted[i] is None]
    print(f"  {len(unboxed)} disagreements on responses without a box after </think> (math-verify reads "
          f"unboxed text; the boxed rule does not), {len(diff) - len(unboxed)} on boxed ones:")
    seen: set = set()
    for i in diff:
        key = (extracted[i], pairs[i][1])
        if extracted[i] is not None and key not in seen and len(seen) < 15:
            seen.add(key)
            print(f"    ours={ours[i]!s:5} math-verify={base[i]!s:5} answer={key[0][:40]!r:44} gold={key[1][:36]!r}")

    t0 = time.perf_counter()
    grading.grade_answer("x+1", "1+x")  # import math-verify and warm sympy up (once per process)
    print(f"first math-verify comparison in a process (import + warm-up): {time.perf_counter() - t0:.2f} s")
    worst, name = 0.0, ""
    hostile = hostile_pairs()
    for response, gold in hostile:
        t0 = time.perf_counter()
        verdict = grade(response, gold)
        dt = time.perf_counter() - t0
        if dt > worst:
            worst, name = dt, ascii(str(response)[:40])
        assert verdict is False
    t0 = time.perf_counter()
    mixed = grade_many(hostile + pairs[:200], workers=args.workers)
    t_mixed = time.perf_counter() - t0
    print(f"hostile: {len(hostile)} inputs, all False; worst grade() {worst:.2f} s ({name}); "
          f"grade_many(hostile + 200 pairs) {t_mixed:.2f} s, same verdicts: {mixed[len(hostile):] == ours[:200]}")
    shutdown_pool()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
