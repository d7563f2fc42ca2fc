"""One small module per dataset: parse raw archives into `datasets.Dataset`, preprocess into arrays."""
