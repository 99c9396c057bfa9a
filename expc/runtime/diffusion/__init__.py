"""Runtime pieces of the diffusion memorization experiment (Bonnaire et al.)."""
