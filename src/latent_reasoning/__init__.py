"""Latent-reasoning research toolkit: CoT-SFT, No-CoT, Coconut, ATP-Latent and latent RL on small models."""
