"""The emulator's models through the official clients: the tuned model learns the sample data with the default
settings, the base model (`translation-llm-002`) answers deterministically, and tuning beats it on chrF."""

from __future__ import annotations

import json
from typing import Iterator

import pytest
import requests
import sacrebleu
import vertexai
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform import initializer
from google.genai import errors, types
from vertexai.generative_models import GenerationConfig, GenerativeModel

from emulator.server import RunningEmulator, serve_in_thread
from emulator.settings import EmulatorSettings, TrainingSettings
from tests.conftest import LOCATION, PROJECT, SAMPLE_TRAIN, SAMPLE_VALIDATION, upload
from tests.emulator.helpers import wait_until_ended
from tests.emulator.test_vertex_genai import genai_client, tune

pytestmark = [pytest.mark.filterwarnings("ignore::google.genai.errors.ExperimentalWarning"),
              pytest.mark.filterwarnings("ignore:.*deprecated as of June 24, 2025.*:UserWarning")]

BASE = "translation-llm-002"
GREEDY = types.GenerateContentConfig(temperature=0.0)


def pairs(path) -> list[tuple[str, str]]:
    """(prompt, answer) of each example of a dataset file."""
    rows = [json.loads(line)["contents"] for line in path.read_text(encoding="utf-8").splitlines()]
    return [(turns[0]["parts"][0]["text"], turns[1]["parts"][0]["text"]) for turns in rows]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """An emulator with the DEFAULT training settings (not the tests' fast ones)."""
    settings = EmulatorSettings(host="127.0.0.1", port=0, data_dir=tmp_path_factory.mktemp("models-emulator"),
                                training=TrainingSettings())
    with serve_in_thread(settings) as running:
        yield running


@pytest.fixture(scope="module")
def tuned_endpoint(served: RunningEmulator) -> str:
    """The endpoint of a job tuned on the sample data (google-genai `tunings.tune`, as a user would)."""
    client = genai_client(served)
    created = tune(client, upload(served, "datasets", "train.jsonl", SAMPLE_TRAIN),
                   upload(served, "datasets", "validation.jsonl", SAMPLE_VALIDATION))
    job = wait_until_ended(lambda: client.tunings.get(name=created.name))
    assert job.has_succeeded, job.error
    return job.tuned_model.endpoint


def answers(served: RunningEmulator, model: str, prompts: list[str]) -> list[str]:
    client = genai_client(served)
    return [client.models.generate_content(model=model, contents=prompt, config=GREEDY).text or ""
            for prompt in prompts]


def test_tuned_model_reproduces_the_training_answers_and_beats_the_base_model(served, tuned_endpoint):
    train, validation = pairs(SAMPLE_TRAIN), pairs(SAMPLE_VALIDATION)

    reproduced = answers(served, tuned_endpoint, [prompt for prompt, _ in train])
    exact = sum(got == want for got, (_, want) in zip(reproduced, train, strict=True)) / len(train)
    references = [[answer for _, answer in validation]]
    tuned = sacrebleu.CHRF().corpus_score(answers(served, tuned_endpoint, [p for p, _ in validation]), references)
    base = sacrebleu.CHRF().corpus_score(answers(served, BASE, [p for p, _ in validation]), references)

    assert exact >= 0.9, f"{exact:.1%} of the training answers reproduced"
    assert tuned.score > base.score, (tuned, base)
    assert answers(served, tuned_endpoint, ["English: Hello. Spanish:"]) == ["Hola."]


def test_base_model_answers_google_genai_deterministically(served):
    client = genai_client(served)

    first, again = (client.models.generate_content(model=BASE, contents="English: Hello. Spanish:", config=GREEDY)
                    for _ in range(2))

    assert first.text and first.text == again.text
    assert first.model_version == BASE
    assert first.usage_metadata.prompt_token_count == len(b"English: Hello. Spanish:") + 2  # bytes, BOS, SEP
    assert first.candidates[0].finish_reason in (types.FinishReason.STOP, types.FinishReason.MAX_TOKENS)


def test_base_model_answers_the_vertexai_sdk_like_google_genai(served):
    config = initializer.global_config
    saved = dict(vars(config))
    vertexai.init(project=PROJECT, location=LOCATION, api_endpoint=served.url, api_transport="rest",
                  credentials=AnonymousCredentials())
    try:
        response = GenerativeModel(BASE).generate_content("English: Hello. Spanish:",
                                                          generation_config=GenerationConfig(temperature=0.0))
    finally:
        vars(config).clear()
        vars(config).update(saved)

    assert response.text == answers(served, BASE, ["English: Hello. Spanish:"])[0]


@pytest.mark.parametrize("path", [
    f"v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{BASE}",
    f"v1beta1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{BASE}",
    f"v1/publishers/google/models/{BASE}",
    f"v1beta1/publishers/google/models/{BASE}",
])
def test_base_model_is_served_on_every_documented_path(served, path):
    body = {"contents": [{"role": "user", "parts": [{"text": "English: Hello. Spanish:"}]}]}

    response = requests.post(f"{served.url}/{path}:generateContent", json=body, timeout=60)

    assert response.status_code == 200, response.text
    assert response.json()["candidates"][0]["content"]["parts"][0]["text"]


def test_other_publisher_models_are_not_found(served):
    client = genai_client(served)  # held: a collected client closes its HTTP session

    with pytest.raises(errors.ClientError) as raised:
        client.models.generate_content(model="gemini-2.0-flash", contents="hi")

    assert (raised.value.code, raised.value.status) == (404, "NOT_FOUND")
