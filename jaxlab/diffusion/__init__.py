"""Diffusion: noise schedules, the DDIM sampler, the SD text-to-image pipeline, partial fine-tuning, scoring."""
