"""`tuningDataStats.supervisedTuningDataStats` computed from the examples of a training dataset.

`DataStatsAccumulator` takes the examples one at a time, so a dataset is streamed once and never held in
memory: per example it keeps only three small ints, counted per distinct value (token counts are bounded
by the 1,000-token example limit), so memory does not grow with the number of examples.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from tuning.dataset import estimate_tokens

_EXAMPLES_SHOWN = 3


def distribution(values: Sequence[int] | Mapping[int, int], bucket_count: int = 5) -> dict[str, Any]:
    """A DatasetDistribution (int64 fields as strings, as proto3 JSON writes them) of `values`, or of a {value:
    how many times it occurs} mapping (same result, constant memory), in `bucket_count` equal-width buckets."""
    counts = values if isinstance(values, Mapping) else Counter(values)
    ordered = sorted((value, count) for value, count in counts.items() if count > 0)
    if not ordered:
        return {}
    value, count = np.array(ordered, np.int64).T
    n, total = int(count.sum()), int(value @ count)
    low, high = int(value[0]), int(value[-1])
    width = max(1, math.ceil((high - low + 1) / bucket_count))
    # Edges low, low + width, ... up to the first one past high (numpy's last bucket is closed: it stays empty).
    edges = np.arange(low, high + width + 1, width)
    in_bucket, _ = np.histogram(value, edges, weights=count)
    # Percentiles interpolate linearly between the ranks around (n - 1) * percent / 100 of the sorted values; the
    # value at a rank is found in the cumulative counts, so the values are never expanded one per example.
    rank = (n - 1) * np.array([50, 5, 95]) / 100
    below, above = value[np.searchsorted(count.cumsum(), [np.floor(rank), np.ceil(rank)], side="right")]
    median, p5, p95 = (below + (above - below) * (rank - np.floor(rank))).tolist()
    return {"sum": str(total), "billableSum": str(total), "min": low, "max": high, "mean": total / n,
            "median": median, "p5": p5, "p95": p95,
            "buckets": [{"count": int(c), "left": left, "right": left + width}
                        for c, left in zip(in_bucket, edges[:-1].tolist(), strict=True)]}


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
        token_total = sum(value * count for value, count in (self.input_tokens + self.output_tokens).items())
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
