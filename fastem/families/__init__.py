"""Mixture families: parameters, M-steps, parameter counts and sampling."""
