"""Data preparation: the sha256-checked rebuild of the bundled data and tfds builders."""
