"""Built-in method plugins: one sub-package per method, each with config.yaml and card.md."""
