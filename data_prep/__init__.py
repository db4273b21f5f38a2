"""Data preparation: sha256-checked builders for the bundled data, the public pretraining corpora
(`public_corpora`) and the simulated corpus, with tfds (array_record) builders for each."""
