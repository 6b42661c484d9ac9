"""Prompt a tuned endpoint with generateContent through the official aiplatform v1 client (REST).

generateContent is retried (429, 5xx, connection errors; `RetryPolicy`): it changes nothing on the service, so
sending the prompt again is safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from google.auth.credentials import Credentials
from google.cloud import aiplatform_v1

from tuning.client import ApiTarget, RetryPolicy, calling
from tuning.errors import EmptyAnswerError


@dataclass(frozen=True)
class Reply:
    """The first candidate of a generateContent response and its token counts."""

    text: str
    finish_reason: str
    prompt_token_count: int
    candidates_token_count: int


class PredictionApi:
    """generateContent on a tuned endpoint (`projects/P/locations/L/endpoints/E`) or a base model
    (`projects/P/locations/L/publishers/google/models/M`), against Vertex AI or the emulator."""

    def __init__(self, target: ApiTarget, *, credentials: Optional[Credentials] = None,
                 retry_policy: Optional[RetryPolicy] = None) -> None:
        self.target = target
        self.retry_policy = retry_policy or RetryPolicy.from_environment()
        self._client = target.rest_client(aiplatform_v1.PredictionServiceClient, credentials)

    def generate(self, endpoint: str, prompt: str, *, max_output_tokens: int = 256,
                 temperature: float = 0.0) -> Reply:
        """Send `prompt` as one user turn; returns the first candidate.

        Raises:
            ApiCallError: the service rejected the request (bad endpoint name, missing endpoint, ...), or the call
                kept failing until the retry deadline.
            EmptyAnswerError: the endpoint answered no candidate.
        """
        request = aiplatform_v1.GenerateContentRequest(
            model=endpoint,
            contents=[aiplatform_v1.Content(role="user", parts=[aiplatform_v1.Part(text=prompt)])],
            generation_config=aiplatform_v1.GenerationConfig(max_output_tokens=max_output_tokens,
                                                             temperature=temperature))
        call = "endpoints.generateContent" if "/endpoints/" in endpoint else "models.generateContent"
        with calling(call, endpoint, self.target, self.retry_policy):
            response = self._client.generate_content(request=request, retry=self.retry_policy.retry(),
                                                     timeout=self.retry_policy.attempt_timeout)
        if not response.candidates:
            raise EmptyAnswerError(f"{endpoint} returned no candidate")
        candidate = response.candidates[0]
        return Reply(text="".join(part.text for part in candidate.content.parts),
                     finish_reason=candidate.finish_reason.name,
                     prompt_token_count=response.usage_metadata.prompt_token_count,
                     candidates_token_count=response.usage_metadata.candidates_token_count)
