"""Write the examples' held-out evaluation problems: generated arithmetic word problems, with another
seed than the training data's (usage: python examples/arith_eval.py OUT.jsonl [N] [SEED])."""

import json
import sys

from egrc_lite.data import arithmetic_problems

args = sys.argv[1:] + ["32", "20240"][len(sys.argv) - 2:]  # defaults: 32 problems, seed 20240
out, n, seed = args[0], int(args[1]), int(args[2])
with open(out, "w", encoding="utf-8") as fh:
    for i, p in enumerate(arithmetic_problems(n, seed=seed)):
        fh.write(json.dumps({"id": f"arith-eval-{i}", "problem": p.problem, "answer": p.answer}) + "\n")
