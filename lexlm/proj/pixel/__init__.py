"""Pixel sentence encoders against a subword encoder (Xiao et al., 2024; Rust et al., 2023):
config, run, evaluate and report of the ``pixel`` project (``lexlm.proj.pixel.config``)."""
