"""Merge a LoRA adapter into its base model, and prove the merge: ``egrc-lite merge``.

The output folder holds ``model.safetensors`` (sharded when large), ``config.json``,
``generation_config.json``, the tokenizer and its chat template: plain transformers (or vLLM)
loads it, egrc-lite is not needed. A small ``egrc_merge.json`` records what was merged.

Where the base comes from, first match wins: ``base=``; the run's ``config.yaml`` one level
above the adapter (``runs/NAME/adapter`` -> ``runs/NAME/config.yaml``; keeps e.g. the
``builtin:tiny`` shapes); the adapter's ``adapter_config.json`` (``base_model_name_or_path``).
``builtin:tiny``, ``builtin:smollm2-135m`` and ``.gguf`` sources resolve as in training
(:func:`egrc_lite.backends.sources.resolve_model_source`). ``trust_remote_code`` is the caller's
(``--trust-remote-code``), never the run config's; ``egrc_merge.json`` records the value used.

4-bit (QLoRA) adapters: the base is always loaded from its original 16-bit checkpoint, with no
quantization config; a base checkpoint that is itself quantized (``quantization_config`` in
its ``config.json``, e.g. a ``*-bnb-4bit`` repo) is refused, since merging into dequantized
4-bit weights would bake the quantization error into every weight.

The merge runs in fp32 (on the GPU when the fp32 base fits in its free memory, else on the CPU),
in place: one fp32 copy of the model at a time (about 4 bytes per parameter, ~7 GB for R1-1.5B).
It is checked twice on a probe batch (a few chat prompts and one id pattern spread over the vocabulary):

1. Before saving, the arithmetic: the fp32 logits of base + adapter (unmerged, the LoRA branch
   computed separately; taken before merging in place) against the fp32 logits of the merged model.
   It fails when ``max |logits_merged - logits_adapter| > 1e-4 * max(1, max |logits_adapter|)``.
   When the adapter itself moves the logits by no more than that tolerance (e.g. an untrained,
   all-zero LoRA B), the check cannot tell a merge from no merge: that is refused as inconclusive
   (:class:`InconclusiveMergeError`) unless ``allow_inconclusive`` (``--allow-inconclusive``).
2. After saving, the rounding: the same reference against the *saved* merged model, reloaded from the
   output folder by plain ``AutoModelForCausalLM`` (its saved weights upcast exactly to fp32), with
   ``tol`` = 1e-4 (fp32), 1e-2 (fp16), 3e-2 (bf16) by default in the same formula: what rounding the
   merged weights to the saved dtype may cost (measured on SmolLM2-135M with a random rank-16 adapter:
   bf16 0.37 and fp16 0.086 at a logit scale of 39, i.e. about a third of the tolerance). At bf16 that
   is about one logit for R1-sized models, too coarse to see a missing merge: check 1 is what does.

The largest difference the adapter itself makes is reported beside them. For an adapter trained on
a 4-bit (QLoRA) base, the gap between the model it was trained on (the base quantized to 4-bit as
training loads it, + adapter) and the saved merge is reported too, when bitsandbytes and a CUDA GPU
are there; else the output says it was not measured and why. The output is written to a temp folder
and renamed into place only after the checks pass.

Owns: what a merge produces and how it fails (``result``: the dtypes and tolerances,
:class:`MergeResult`, :class:`MergeError`), finding, loading and saving (``load``: the adapter
folder, the base and its tokenizer, the work device, the saved output and its reload), the logit
checks (``check``: the probe batch, the fp32 check, the 4-bit gap) and the merge itself (``run``:
:func:`merge_adapter`); the public names are re-exported here.

May import: generate, grading, backends, presets, data, runs, config, errors.

>>> relative_tolerance("bf16")
0.03
"""

from __future__ import annotations

from egrc_lite.merge.check import PROBE_PROMPTS as PROBE_PROMPTS
from egrc_lite.merge.load import check_adapter_dir as check_adapter_dir
from egrc_lite.merge.load import find_base as find_base
from egrc_lite.merge.load import read_adapter_config as read_adapter_config
from egrc_lite.merge.result import DTYPES as DTYPES
from egrc_lite.merge.result import FP32_TOLERANCE as FP32_TOLERANCE
from egrc_lite.merge.result import MERGE_RECORD as MERGE_RECORD
from egrc_lite.merge.result import TOLERANCES as TOLERANCES
from egrc_lite.merge.result import InconclusiveMergeError as InconclusiveMergeError
from egrc_lite.merge.result import MergeError as MergeError
from egrc_lite.merge.result import MergeResult as MergeResult
from egrc_lite.merge.result import relative_tolerance as relative_tolerance
from egrc_lite.merge.run import merge_adapter as merge_adapter
