"""generateContent: on a tuned endpoint the job's own trained model decodes the prompt; on the base model
(`publishers/google/models/translation-llm-002`) the untrained network that tuning starts from does."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any

from emulator.clock import now_rfc3339
from emulator.errors import InvalidArgument, NotFound
from emulator.model import TrainedModel, base_model
from emulator.settings import TrainingSettings

# The documented serving limit of translation-llm-002: 1,000 output tokens.
MAX_SERVING_TOKENS = 1000
# The one publisher model the emulator serves: the base model of translation tuning.
BASE_PUBLISHER, BASE_MODEL = "google", "translation-llm-002"


class ModelCache:
    """Keeps the most recently used trained models loaded (they are small, but loading costs a JIT)."""

    def __init__(self, capacity: int = 4) -> None:
        # get(model_dir): the trained model saved there, loaded on first use.
        self.get = lru_cache(maxsize=capacity)(lambda model_dir: TrainedModel.load(Path(model_dir)))
        # Base models by their settings' JSON (settings are not hashable).
        self._base = lru_cache(maxsize=None)(lambda text: base_model(TrainingSettings.model_validate_json(text)))

    def base(self, publisher: str, model: str, settings: TrainingSettings) -> TrainedModel:
        """The base model `publishers/{publisher}/models/{model}`, made on first use (`emulator.model.base_model`);
        NotFound for any other than the base model of translation tuning."""
        if (publisher, model) != (BASE_PUBLISHER, BASE_MODEL):
            raise NotFound(f"Publisher Model `publishers/{publisher}/models/{model}` not found; the emulator "
                           f"serves `publishers/{BASE_PUBLISHER}/models/{BASE_MODEL}` only.")
        return self._base(settings.model_dump_json())

    def clear(self) -> None:
        """Unload every model (the next request for one loads it again from its directory)."""
        self.get.cache_clear()

    def __len__(self) -> int:
        """How many trained models are loaded (the base models aside)."""
        return self.get.cache_info().currsize


def prompt_from_request(body: dict[str, Any]) -> str:
    """The prompt text: the user turns of `contents`, joined like the training examples were."""
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise InvalidArgument("contents is required and must be a non-empty list.")
    texts = []
    for index, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list):
            raise InvalidArgument(f"contents[{index}] must be an object with a list of parts.")
        for part_index, part in enumerate(parts):
            if not isinstance(part, dict) or not isinstance(part.get("text"), str):
                raise InvalidArgument(f"contents[{index}].parts[{part_index}]: only text parts are supported "
                                      "by translation models.")
            texts.append(part["text"])
    if not texts:
        raise InvalidArgument("contents must contain at least one text part.")
    return "\n".join(texts)


def generation_config(body: dict[str, Any]) -> tuple[int, float, int]:
    """(maxOutputTokens, temperature, seed) of a request, checked like the service checks them."""
    config = body.get("generationConfig") or body.get("generation_config") or {}
    if not isinstance(config, dict):
        raise InvalidArgument("generationConfig must be an object.")
    try:
        max_tokens = int(config.get("maxOutputTokens") or config.get("max_output_tokens") or 256)
        temperature = float(config.get("temperature") or 0.0)
        seed = int(config.get("seed") or 0)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(f"generationConfig: maxOutputTokens, temperature and seed must be numbers "
                              f"({error}).") from error
    if not 1 <= max_tokens <= MAX_SERVING_TOKENS:
        raise InvalidArgument(f"generationConfig.maxOutputTokens must be between 1 and {MAX_SERVING_TOKENS}.")
    if not 0.0 <= temperature <= 2.0:
        raise InvalidArgument("generationConfig.temperature must be between 0 and 2.")
    if not -2**31 <= seed < 2**31:
        raise InvalidArgument("generationConfig.seed must be a 32-bit integer.")
    return max_tokens, temperature, seed


def generate_content(model: TrainedModel, body: dict[str, Any], model_version: str) -> dict[str, Any]:
    """A GenerateContentResponse for `body`, decoded by `model`."""
    max_tokens, temperature, seed = generation_config(body)
    generation = model.generate(prompt_from_request(body), max_output_tokens=max_tokens, temperature=temperature,
                                seed=seed)
    return {
        "candidates": [{
            "index": 0,
            "content": {"role": "model", "parts": [{"text": generation.text}]},
            "finishReason": generation.finish_reason,
        }],
        "usageMetadata": {
            "promptTokenCount": generation.prompt_token_count,
            "candidatesTokenCount": generation.output_token_count,
            "totalTokenCount": generation.prompt_token_count + generation.output_token_count,
            "trafficType": "ON_DEMAND",
        },
        "modelVersion": model_version,
        "createTime": now_rfc3339(),
        "responseId": secrets.token_hex(12),
    }
