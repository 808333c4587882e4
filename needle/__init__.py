"""Needle: the CMU Deep Learning Systems framework, clean-room, with dtype extensions."""
