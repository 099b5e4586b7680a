"""What a merge produces and how it fails: the output dtypes and their check tolerances, the record's
file name, :class:`MergeResult`, :class:`MergeError` and :class:`InconclusiveMergeError`.

>>> relative_tolerance("fp16")
0.01
"""

from __future__ import annotations

from dataclasses import dataclass

from egrc_lite.errors import EgrcError

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 3e-2}
FP32_TOLERANCE = 1e-4  # relative tolerance of the check of the merge arithmetic (merged vs unmerged, both fp32)
MERGE_RECORD = "egrc_merge.json"


class MergeError(EgrcError):
    """The adapter cannot be merged (missing files, unknown base, failed check); one line."""


class InconclusiveMergeError(MergeError):
    """The adapter moves the logits by no more than the fp32 check's tolerance: a merge cannot be told
    from no merge (``--allow-inconclusive`` saves it anyway); one line."""


@dataclass
class MergeResult:
    """What was merged and how the checks went; logit differences are absolute (max over the probe).

    ``max_abs_diff``/``tolerance``: the saved model vs base+adapter (the saved dtype's rounding);
    ``fp32_max_abs_diff``/``fp32_tolerance``: the fp32 merge vs base+adapter (the merge arithmetic);
    ``quant_gap``: 4-bit base + adapter vs the saved model (``None`` with ``quant_gap_note`` saying why).
    """

    out: str
    adapter: str
    base: str
    base_source: str
    dtype: str
    max_abs_diff: float
    tolerance: float
    logit_scale: float
    adapter_effect: float
    trained_4bit: bool
    probe_tokens: int
    fp32_max_abs_diff: float = 0.0
    fp32_tolerance: float = 0.0
    quant_gap: float | None = None
    quant_gap_note: str = ""
    trust_remote_code: bool = False

    @property
    def inconclusive(self) -> bool:
        """The adapter's effect is within the fp32 check's tolerance: no merge would have passed it too."""
        return self.adapter_effect <= self.fp32_tolerance

    @property
    def passed(self) -> bool:
        return self.fp32_max_abs_diff <= self.fp32_tolerance and self.max_abs_diff <= self.tolerance


def relative_tolerance(dtype: str) -> float:
    """The default relative tolerance of the merge check for an output ``dtype`` (bf16|fp16|fp32)."""
    return TOLERANCES[dtype_key(dtype)]


def dtype_key(dtype: str) -> str:
    """``dtype`` when it is an output dtype this merge saves (bf16|fp16|fp32), else a :class:`MergeError`."""
    if dtype not in DTYPES:
        raise MergeError(f"--dtype {dtype!r}: valid: {', '.join(DTYPES)}")
    return dtype
