"""Inverse design: candidates, scoring, latent-space search, random-search baseline."""
