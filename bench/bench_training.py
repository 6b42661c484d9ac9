"""Benchmark: one tuning job with the DEFAULT training settings on the sample data, and what its model learned.

    venv/bin/python bench/bench_training.py [--jobs 1]

Serves the emulator in this process (fresh data dir, so the JAX compilation cache starts cold), uploads
data/train.jsonl and data/validation.jsonl, and runs `--jobs` jobs one after the other through google-genai
`tunings.tune` (the later ones find the compiled steps in the cache). For each job it prints:

* wall: job creation to SUCCEEDED as the client sees it (polling every 0.1 s), and the service's
  startTime -> endTime (data validation, the trainer child's start-up, training, saving);
* the trainer's phases from its trainer.log: imports (JAX, optax, ...), training (tokenizer, compilation, steps,
  evaluation), saving;

then, through the first job's tuned endpoint and the base model, greedy decoding (google-genai
generateContent): the fraction of training answers reproduced exactly, and chrF and BLEU (sacrebleu corpus
scores) on the validation set for the tuned and the base model.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import sacrebleu
from google import genai
from google.genai import types
from google.oauth2.credentials import Credentials

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from emulator.server import serve_in_thread  # noqa: E402
from emulator.settings import EmulatorSettings, TrainingSettings  # noqa: E402

PROJECT, LOCATION = "bench-project", "us-central1"
TRAIN, VALIDATION = REPO / "data" / "train.jsonl", REPO / "data" / "validation.jsonl"


def pairs(path: Path) -> list[tuple[str, str]]:
    rows = [json.loads(line)["contents"] for line in path.read_text(encoding="utf-8").splitlines()]
    return [(turns[0]["parts"][0]["text"], turns[1]["parts"][0]["text"]) for turns in rows]


def upload(url: str, name: str, path: Path) -> str:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": url})
    bucket = client.bucket("bench") if client.lookup_bucket("bench") else client.create_bucket("bench")
    bucket.blob(name).upload_from_filename(str(path))
    return f"gs://bench/{name}"


def seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end.replace("Z", "+00:00")) -
            datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def run_job(client: genai.Client, train_uri: str, validation_uri: str, data_dir: Path, n: int) -> tuple[str, float]:
    """One job to its end; prints its wall times and phases; returns (its tuned endpoint, its wall time)."""
    config = types.CreateTuningJobConfig(tuned_model_display_name=f"bench-{n}",
                                         validation_dataset=types.TuningValidationDataset(gcs_uri=validation_uri))
    began = time.monotonic()
    job = client.tunings.tune(base_model="translation-llm-002", training_dataset=types.TuningDataset(gcs_uri=train_uri),
                              config=config)
    while not job.has_ended:
        time.sleep(0.1)
        job = client.tunings.get(name=job.name)
    wall = time.monotonic() - began
    if not job.has_succeeded:
        sys.exit(f"job {job.name} ended {job.state}: {job.error}")
    raw = client.tunings._api_client.request("get", job.name, {}).body  # the REST times, to the microsecond
    times = json.loads(raw)
    log = next((data_dir / "jobs" / job.name.rsplit("/", 1)[1]).glob("run-*/trainer.log")).read_text()
    phases = ", ".join(f"{name.split(' (')[0]} {value} s" for name, value in
                       re.findall(r"^trainer: (.+) ([0-9.]+) s$", log, re.MULTILINE))
    print(f"job {n}: wall {wall:.1f} s (client: create -> SUCCEEDED); service startTime -> endTime "
          f"{seconds(times['startTime'], times['endTime']):.1f} s; trainer phases: {phases}")
    return job.tuned_model.endpoint, wall


def greedy(client: genai.Client, model: str, prompts: list[str]) -> list[str]:
    config = types.GenerateContentConfig(temperature=0.0)
    return [client.models.generate_content(model=model, contents=p, config=config).text or "" for p in prompts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1, help="jobs to run one after the other (default 1)")
    args = parser.parse_args()
    print(f"settings: {TrainingSettings().model_dump()}")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "emulator"
        with serve_in_thread(EmulatorSettings(port=0, data_dir=data_dir, training=TrainingSettings())) as running:
            client = genai.Client(vertexai=True, project=PROJECT, location=LOCATION,
                                  credentials=Credentials(token="bench"),
                                  http_options=types.HttpOptions(base_url=running.url + "/", api_version="v1"))
            train_uri, validation_uri = upload(running.url, "train.jsonl", TRAIN), upload(
                running.url, "validation.jsonl", VALIDATION)
            jobs = [run_job(client, train_uri, validation_uri, data_dir, n + 1) for n in range(args.jobs)]
            endpoints = [endpoint for endpoint, _ in jobs]

            train, validation = pairs(TRAIN), pairs(VALIDATION)
            got = greedy(client, endpoints[0], [p for p, _ in train])
            exact = sum(g == a for g, (_, a) in zip(got, train, strict=True))  # one answer per training prompt
            print(f"training answers reproduced exactly (greedy): {exact}/{len(train)} = {exact / len(train):.1%}")
            print(f"'English: Hello. Spanish:' -> {greedy(client, endpoints[0], ['English: Hello. Spanish:'])[0]!r}")
            references = [[a for _, a in validation]]
            chrf = {}
            for name, model in (("tuned", endpoints[0]), ("base", "translation-llm-002")):
                hyps = greedy(client, model, [p for p, _ in validation])
                chrf[name] = sacrebleu.CHRF().corpus_score(hyps, references).score
                print(f"validation ({len(validation)} examples), {name}: chrF {chrf[name]:.1f}, "
                      f"BLEU {sacrebleu.BLEU().corpus_score(hyps, references).score:.1f}; first: {hyps[0]!r}")
    write_checks(first_job_wall=jobs[0][1], exact=exact, examples=len(train), chrf=chrf)


def write_checks(*, first_job_wall: float, exact: int, examples: int, chrf: dict[str, float]) -> None:
    """bench/results/training.json for bench/report.py: the issue's three targets for the emulator's model."""
    checks = [
        {"name": "a tuning job with the default settings, cold (create to SUCCEEDED)", "baseline": "",
         "measured": f"{first_job_wall:.1f} s", "ratio": None, "target": "< 60 s", "ok": first_job_wall < 60},
        {"name": "training answers reproduced exactly by greedy decoding", "baseline": "",
         "measured": f"{exact}/{examples} = {exact / examples:.1%}", "ratio": None, "target": ">= 90%",
         "ok": exact / examples >= 0.9},
        {"name": "validation chrF, tuned endpoint against the base model", "baseline": f"base {chrf['base']:.1f}",
         "measured": f"tuned {chrf['tuned']:.1f}", "ratio": None, "target": "tuned > base",
         "ok": chrf["tuned"] > chrf["base"]},
    ]
    out = REPO / "bench" / "results" / "training.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "training", "checks": checks}, indent=2) + "\n")


if __name__ == "__main__":
    main()
