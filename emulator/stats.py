"""`tuningDataStats.supervisedTuningDataStats` computed from the examples of a training dataset.

`DataStatsAccumulator` takes the examples one at a time, so a dataset is streamed once and never held in
memory: per example it keeps only three small ints, counted per distinct value (token counts are bounded
by the 1,000-token example limit), so memory does not grow with the number of examples.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

from tuning.dataset import estimate_tokens

_EXAMPLES_SHOWN = 3


def distribution(values: Sequence[int] | Mapping[int, int], bucket_count: int = 5) -> dict[str, Any]:
    """A DatasetDistribution (int64 fields as strings, as proto3 JSON writes them) of `values`, or of a {value:
    how many times it occurs} mapping (same result, constant memory), in `bucket_count` equal-width buckets."""
    counts = values if isinstance(values, Mapping) else Counter(values)
    ordered = sorted((value, count) for value, count in counts.items() if count > 0)
    if not ordered:
        return {}
    n = sum(count for _value, count in ordered)
    low, high = ordered[0][0], ordered[-1][0]
    width = max(1, math.ceil((high - low + 1) / bucket_count))
    buckets = []
    for left in range(low, high + 1, width):
        right = left + width
        count = sum(count for value, count in ordered if left <= value < right)
        buckets.append({"count": count, "left": left, "right": right})
    total = sum(value * count for value, count in ordered)
    return {"sum": str(total), "billableSum": str(total), "min": low, "max": high, "mean": total / n,
            "median": _percentile(ordered, n, 50), "p5": _percentile(ordered, n, 5),
            "p95": _percentile(ordered, n, 95), "buckets": buckets}


def _nth(ordered: Sequence[tuple[int, int]], index: int) -> int:
    """The value at position `index` of the sorted values that (value, count) pairs describe."""
    seen = 0
    for value, count in ordered:
        seen += count
        if index < seen:
            return value
    raise IndexError(index)


def _percentile(ordered: Sequence[tuple[int, int]], n: int, percent: float) -> float:
    rank = (n - 1) * percent / 100
    lower, upper = math.floor(rank), math.ceil(rank)
    low_value, high_value = _nth(ordered, lower), _nth(ordered, upper)
    return low_value + (high_value - low_value) * (rank - lower)


class DataStatsAccumulator:
    """Builds supervisedTuningDataStats from examples added one at a time (exact counts, bounded memory)."""

    def __init__(self) -> None:
        self.characters = 0
        self.input_tokens: Counter[int] = Counter()
        self.output_tokens: Counter[int] = Counter()
        self.messages: Counter[int] = Counter()
        self.shown: list[Sequence[tuple[str, str]]] = []

    def add(self, turns: Sequence[tuple[str, str]]) -> None:
        """Count one example, a list of (role, text) turns."""
        user_chars = sum(len(text) for role, text in turns if role == "user")
        model_chars = sum(len(text) for role, text in turns if role == "model")
        self.characters += user_chars + model_chars
        self.input_tokens[estimate_tokens(user_chars)] += 1
        self.output_tokens[estimate_tokens(model_chars)] += 1
        self.messages[len(turns)] += 1
        if len(self.shown) < _EXAMPLES_SHOWN:
            self.shown.append(list(turns))

    def result(self, *, tuning_step_count: int) -> dict[str, Any]:
        token_total = (sum(value * count for value, count in self.input_tokens.items())
                       + sum(value * count for value, count in self.output_tokens.items()))
        return {
            "tuningDatasetExampleCount": str(sum(self.messages.values())),
            "totalTuningCharacterCount": str(self.characters),
            "totalBillableCharacterCount": str(self.characters),
            "totalBillableTokenCount": str(token_total),
            "tuningStepCount": str(tuning_step_count),
            "userInputTokenDistribution": distribution(self.input_tokens),
            "userOutputTokenDistribution": distribution(self.output_tokens),
            "userMessagePerExampleDistribution": distribution(self.messages),
            "userDatasetExamples": [
                {"role": role, "parts": [{"text": text}]} for turns in self.shown for role, text in turns
            ],
            "totalTruncatedExampleCount": "0",
        }


def supervised_tuning_data_stats(examples: Iterable[Sequence[tuple[str, str]]], *,
                                 tuning_step_count: int) -> dict[str, Any]:
    """Stats of examples, each a list of (role, text) turns (any iterable: it is read once)."""
    accumulator = DataStatsAccumulator()
    for turns in examples:
        accumulator.add(turns)
    return accumulator.result(tuning_step_count=tuning_step_count)
