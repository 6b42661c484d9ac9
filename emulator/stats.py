"""`tuningDataStats.supervisedTuningDataStats` computed from the examples of a training dataset."""

from __future__ import annotations

import math
from typing import Any, Sequence

from tuning.dataset import estimate_tokens

_EXAMPLES_SHOWN = 3


def distribution(values: Sequence[int], bucket_count: int = 5) -> dict[str, Any]:
    """A DatasetDistribution (int64 fields as strings, as proto3 JSON writes them)."""
    if not values:
        return {}
    ordered = sorted(values)
    low, high = ordered[0], ordered[-1]
    width = max(1, math.ceil((high - low + 1) / bucket_count))
    buckets = []
    for left in range(low, high + 1, width):
        right = left + width
        count = sum(1 for value in ordered if left <= value < right)
        buckets.append({"count": count, "left": left, "right": right})
    total = sum(ordered)
    return {"sum": str(total), "billableSum": str(total), "min": low, "max": high, "mean": total / len(ordered),
            "median": _percentile(ordered, 50), "p5": _percentile(ordered, 5), "p95": _percentile(ordered, 95),
            "buckets": buckets}


def _percentile(ordered: Sequence[int], percent: float) -> float:
    rank = (len(ordered) - 1) * percent / 100
    lower, upper = math.floor(rank), math.ceil(rank)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (rank - lower)


def supervised_tuning_data_stats(examples: Sequence[Sequence[tuple[str, str]]], *,
                                 tuning_step_count: int) -> dict[str, Any]:
    """Stats of a list of examples, each a list of (role, text) turns."""
    input_tokens, output_tokens, messages, characters = [], [], [], 0
    for turns in examples:
        user_chars = sum(len(text) for role, text in turns if role == "user")
        model_chars = sum(len(text) for role, text in turns if role == "model")
        characters += user_chars + model_chars
        input_tokens.append(estimate_tokens(user_chars))
        output_tokens.append(estimate_tokens(model_chars))
        messages.append(len(turns))
    return {
        "tuningDatasetExampleCount": str(len(examples)),
        "totalTuningCharacterCount": str(characters),
        "totalBillableCharacterCount": str(characters),
        "totalBillableTokenCount": str(sum(input_tokens) + sum(output_tokens)),
        "tuningStepCount": str(tuning_step_count),
        "userInputTokenDistribution": distribution(input_tokens),
        "userOutputTokenDistribution": distribution(output_tokens),
        "userMessagePerExampleDistribution": distribution(messages),
        "userDatasetExamples": [
            {"role": role, "parts": [{"text": text}]} for turns in examples[:_EXAMPLES_SHOWN] for role, text in turns
        ],
        "totalTruncatedExampleCount": "0",
    }
