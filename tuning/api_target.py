"""Where API calls go (project, region, emulator), apart from the clients that make them.

The dynamic providers build an `ApiTarget` in `configure()`, before every check and diff; this module imports no
Google client, so a no-op `pulumi preview` never loads one (the clients load in `rest_client`, on first call).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Protocol, TypeVar

if TYPE_CHECKING:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import Credentials


class RestClient(Protocol):
    """How `ApiTarget.rest_client` builds a generated client (`aiplatform_v1.GenAiTuningServiceClient`, ...)."""

    def __init__(self, *, client_options: ClientOptions, transport: str,
                 credentials: Optional[Credentials]) -> None: ...


Client = TypeVar("Client", bound=RestClient)


@dataclass(frozen=True)
class ApiTarget:
    """Where calls go: a GCP project and region, and optionally an emulator base URL (http://host:port)."""

    project: str
    location: str = "us-central1"
    emulator_endpoint: Optional[str] = None

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def api_endpoint(self) -> str:
        """The emulator's URL, or the regional Vertex AI host."""
        return self.emulator_endpoint or f"{self.location}-aiplatform.googleapis.com"

    def rest_client(self, client_class: type[Client], credentials: Optional[Credentials] = None) -> Client:
        """A generated aiplatform_v1 client for this target over REST.

        REST, because the gRPC transport always uses TLS and cannot reach a plain-http emulator; the
        REST transport keeps an explicit http:// scheme of `api_endpoint`. The emulator gets anonymous
        credentials, since there is no ADC offline; Vertex AI gets `credentials` or ADC.

        Raises:
            ApiCallError: no credentials were given and none are found (application default credentials).
        """
        from google.api_core.client_options import ClientOptions
        from google.auth import exceptions as auth_exceptions
        from google.auth.credentials import AnonymousCredentials

        from tuning.client import missing_credentials

        if self.emulator_endpoint:
            credentials = credentials or AnonymousCredentials()
        try:
            return client_class(client_options=ClientOptions(api_endpoint=self.api_endpoint), transport="rest",
                                credentials=credentials)
        except auth_exceptions.DefaultCredentialsError as error:
            raise missing_credentials(f"Vertex AI {client_class.__name__.removesuffix('Client')}",
                                      f"in {self.parent}") from error
