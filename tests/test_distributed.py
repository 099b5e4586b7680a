"""Two CPU processes under ``accelerate launch``: both stages, one metrics row per step, rank 0 writes.

Note: on a CPU, ``accelerate launch --cpu --num_processes 2`` starts ONE process (accelerate's simple
launcher honours ``--num_processes`` on CPUs only with ``--mpirun_hostfile``). Two real processes come
from ``accelerate launch --multi_gpu --num_processes 2`` (torchrun underneath) on a machine without
GPUs: egrc-lite then sets ``use_cpu`` and accelerate picks gloo (``MULTI_CPU``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    import torch
    from accelerate import PartialState
    from egrc_lite import train
    from egrc_lite.train import rewards as reward_funcs
    from egrc_lite.backends import hf
    from egrc_lite.config import EgrcConfig
    from egrc_lite.runs import RunDir

    def parity_reward(prompts=None, completions=None, completion_ids=None, **kwargs):
        return [0.5 if ids and ids[0] % 2 else 0.0 for ids in completion_ids]

    parity_reward.__name__ = "parity"
    reward_funcs.build_reward_funcs = lambda mode, reward_cfg, stage_cfg: [parity_reward]
    loaded = []
    real_load = hf.load_policy

    def keep_model(*args, **kwargs):
        loaded.append(real_load(*args, **kwargs))
        return loaded[-1]

    hf.load_policy = keep_model
    torch.set_num_threads(1)
    cfg = EgrcConfig.model_validate(json.loads(sys.argv[2]))
    out = train.run_schedule(cfg, RunDir(sys.argv[1]))
    state = PartialState()
    digest = hashlib.sha256()
    for name, param in loaded[0][0].named_parameters():
        if param.requires_grad:
            digest.update(param.detach().cpu().numpy().tobytes())
    with open(f"{sys.argv[1]}/rank{state.process_index}.json", "w") as fh:
        json.dump({"steps": out["steps"], "world": state.num_processes, "lora": digest.hexdigest()}, fh)
""")


@pytest.mark.slow
def test_two_process_cpu_run(tmp_path):
    beside = Path(sys.executable).parent / "accelerate"
    launcher = str(beside) if beside.exists() else shutil.which("accelerate")
    if launcher is None:
        pytest.skip("the accelerate launcher is not installed")
    sys.path.insert(0, str(REPO / "tests"))
    from test_training import tiny_cfg

    cfg = tiny_cfg(train={"save_steps": 2})
    run = tmp_path / "run"
    script = tmp_path / "dist_run.py"
    script.write_text(SCRIPT)
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", str(script), str(run),
                           cfg.model_dump_json()], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    ranks = [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["steps"], r["world"]) for r in ranks] == [(5, 2), (5, 2)]
    assert ranks[0]["lora"] == ranks[1]["lora"]  # DDP kept the adapters in sync through both stages
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]  # one row per step, not one per process
    assert all(r["train/kept_frac"] is not None for r in rows)
    # 2 prompts x 4 completions per process: the stats cover both processes' 16 completions
    assert all(abs(r["train/kept_frac"] * 16 - round(r["train/kept_frac"] * 16)) < 1e-6 for r in rows)
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    state = json.loads((run / "state.json").read_text())
    assert state["finished"] is True and state["global_step"] == 5
    assert (run / "stages" / "0-compress" / "checkpoint-2" / "egrc_state.json").is_file()
