"""Sub-commands of the CLI, one module per command group; each exposes ``register(subparsers)``."""
