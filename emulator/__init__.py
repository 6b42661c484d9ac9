"""Local emulator of the Vertex AI tuning API and the GCS JSON API, on one port."""
