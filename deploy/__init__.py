"""The project's entry points for the Pulumi engine: offline environment, emulator, Automation API runs."""
