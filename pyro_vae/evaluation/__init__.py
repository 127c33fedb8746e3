"""A trained VAE's held-out bounds per datapoint (ELBO, IWAE-K, PSIS k^, AIS) and their report (bounds),
and the memory that work needs, checked before it starts (memory)."""

from pyro_vae._moved import forward

# pyro_vae.evaluation was the module now at pyro_vae.evaluation.bounds: its names answer here until 0.3.0
__getattr__ = forward("pyro_vae.evaluation", "pyro_vae.evaluation.bounds", (
    "KHAT_MIN_SAMPLES", "FLOAT", "DATA_PLATE", "KHAT_THRESHOLD", "PASS_SAMPLES", "images_per_pass", "Estimate",
    "AISEstimate", "BoundsReport", "DatapointBounds", "datapoint_bounds", "evaluate_bounds", "objective_sum",
    "evaluate_ais"))
