"""Pulumi building blocks of the translation-tuning stack, thin layers over `tuning/`."""
