"""Estimators and objectives for any Pyro model/guide whose sites sit in a data plate: the per-datapoint
log-weight kernel, importance-sampled log p(x), the IWAE bound, AIS and BDMC, the ELBOs by name.
Imports nothing of pyro_vae.models (the import contract in pyproject.toml keeps it so)."""
