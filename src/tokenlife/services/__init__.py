"""Use cases: join the pure core to the adapters. Tasks, the CLI and apps call these."""
