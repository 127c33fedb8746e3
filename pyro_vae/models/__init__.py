"""The generative story and its parts: networks, likelihoods (decoder output -> distribution), the Pyro
model and guide, and the VAE that binds the networks to them. Imports only the core (config, errors)."""
