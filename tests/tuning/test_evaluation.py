"""tuning.evaluation's pure parts: loading pairs, ordered bounded translation, sacrebleu scores and the gate."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import SAMPLE_VALIDATION
from tuning.errors import DatasetError
from tuning.evaluation import EvaluationGateError, base_model_name, check_gate, corpus_scores, load_examples, translate


def test_examples_are_the_prompts_and_answers_of_the_dataset():
    examples = load_examples(SAMPLE_VALIDATION)
    assert len(examples) == len(SAMPLE_VALIDATION.read_text().splitlines())
    assert examples[0].source.startswith("English: ") and examples[0].source.endswith("Spanish:")
    assert examples[0].reference and not examples[0].reference.startswith("English")


def test_a_broken_evaluation_file_names_its_line(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text(SAMPLE_VALIDATION.read_text().splitlines()[0] + "\n{broken\n")
    with pytest.raises(DatasetError, match=r"eval.jsonl:2: "):
        load_examples(path)


def test_translate_keeps_the_order_and_bounds_the_requests_in_flight():
    in_flight, peak, lock = 0, 0, threading.Lock()

    def slow_upper(text: str) -> str:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.02)
        with lock:
            in_flight -= 1
        return f" {text.upper()} "

    sources = [f"s{index}" for index in range(40)]
    assert translate(slow_upper, sources, concurrency=4) == [source.upper() for source in sources]
    assert 1 < peak <= 4


def test_scores_are_sacrebleus_corpus_bleu_and_chrf():
    references = ["Hola.", "Buenos días.", "El gato duerme en la casa."]
    assert corpus_scores(references, references) == {"bleu": 100.0, "chrf": 100.0}
    worse = corpus_scores(["Hola.", "Buenas noches.", "El perro come."], references)
    assert 0 < worse["chrf"] < 100 and 0 <= worse["bleu"] < 100


def test_the_gate_fails_below_the_threshold_naming_score_threshold_and_examples():
    evaluation = {"examples": 60, "tuned": {"bleu": 30.0, "chrf": 52.5}, "base": {"bleu": 1.0, "chrf": 20.25}}
    check_gate(evaluation, 0)      # off
    check_gate(evaluation, 52.5)   # at the threshold passes
    with pytest.raises(EvaluationGateError) as failed:
        check_gate(evaluation, 60)
    assert str(failed.value).startswith("translation quality gate: tuned chrF 52.5 is below minChrf 60 on 60 "
                                        "evaluation examples (base model: 20.2);")


def test_the_base_model_is_the_publisher_model_of_the_target():
    assert base_model_name("p", "us-central1", "translation-llm-002") == \
        "projects/p/locations/us-central1/publishers/google/models/translation-llm-002"

