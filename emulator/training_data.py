"""A job's training data: both datasets validated and read once, their stats, and the trainer's request file.

Memory stays bounded whatever the dataset size (up to the 1 GiB the validator accepts): each dataset object is
opened once, validated, then parsed from the same stream; the training examples feed the exact
`tuningDataStats` as they stream by (a few counters), and the trainer gets only what the model can see: a
seeded uniform sample of at most `steps * epochs * batch_size` training examples, plus the validation set
(at most 1,024 examples by the rules).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Iterator

from emulator.errors import GoogleApiError, InvalidArgument
from emulator.gcs import ObjectStore
from emulator.settings import TrainingSettings
from emulator.stats import DataStatsAccumulator
from tuning.dataset import example_pairs, iter_examples, validate_stream

REQUEST_FILE = "request.json"


class JobFailed(Exception):
    """The job cannot succeed; `error` is the job's error."""

    def __init__(self, error: GoogleApiError) -> None:
        super().__init__(error.message)
        self.error = error


def prepare_training_run(job: dict[str, Any], store: Any, settings: TrainingSettings,
                         run_dir: Path) -> tuple[int, dict[str, Any]]:
    """Validate both datasets of `job`, served by `store` (an `ObjectStore`), and write the trainer's request file
    into `run_dir`. Returns the number of training steps (`steps * epochs`) and the job's `tuningDataStats`;
    JobFailed when a dataset is missing, unreadable or breaks a rule."""
    spec = job.get("supervisedTuningSpec") or {}
    hyper = spec.get("hyperParameters") or {}
    epochs = int(hyper.get("epochCount") or 1)
    total_steps = settings.steps * epochs
    stats = DataStatsAccumulator()
    # Seeded with the training seed: the same data and settings give the same sample, hence the same metrics;
    # a dataset no larger than the sample is kept whole, in file order.
    sample = Reservoir(total_steps * settings.batch_size, seed=settings.seed)
    for turns in read_dataset(store, spec["trainingDatasetUri"], "training"):
        stats.add(turns)
        sample.add(example_pairs(turns))
    validation = ([example_pairs(turns) for turns in read_dataset(store, spec["validationDatasetUri"], "validation")]
                  if spec.get("validationDatasetUri") else None)
    request = {"train": sample.items, "validation": validation or None, "settings": settings.model_dump(),
               "epochs": epochs, "learningRateMultiplier": float(hyper.get("learningRateMultiplier") or 1.0)}
    with open(run_dir / REQUEST_FILE, "w", encoding="utf-8") as out:
        json.dump(request, out)
    return total_steps, {"supervisedTuningDataStats": stats.result(tuning_step_count=total_steps)}


def read_dataset(store: Any, uri: str, kind: str) -> Iterator[list[tuple[str, str]]]:
    """The examples of a dataset object, after validating it; JobFailed when it is missing or unreadable, or the
    data breaks a rule.

    The object is opened once: validated, rewound, then parsed from the same open file, so an upload
    that replaces the object meanwhile cannot make the job train on a generation nobody validated.
    """
    try:
        bucket, name = ObjectStore.parse_gs_uri(uri)
        stream = store.open_object(bucket, name)
    except GoogleApiError as error:
        raise JobFailed(type(error)(f"{kind} dataset: {error.message}")) from error
    with stream:
        report = validate_stream(stream, name=uri, kind=kind)
        if not report.ok:
            shown = "; ".join(str(problem) for problem in report.problems[:5])
            more = report.problem_count - 5
            raise JobFailed(InvalidArgument(f"{kind} dataset {uri} is invalid: {shown}"
                                            + (f" (and {more} more)" if more > 0 else "")))
        stream.seek(0)
        for _line, turns in iter_examples(stream):
            yield turns


class Reservoir:
    """A uniform random sample of at most `capacity` items of a stream (Algorithm R), in O(capacity) memory.

    Seeded: the same stream and seed give the same sample. A stream of at most `capacity` items is kept whole,
    in order.
    """

    def __init__(self, capacity: int, *, seed: int) -> None:
        self.capacity = capacity
        self.items: list[Any] = []
        self.seen = 0
        self._random = random.Random(seed)

    def add(self, item: Any) -> None:
        self.seen += 1
        if len(self.items) < self.capacity:
            self.items.append(item)
            return
        slot = self._random.randrange(self.seen)
        if slot < self.capacity:
            self.items[slot] = item
