"""Baseline servers for the benchmark, each served by gunicorn exactly like the service.

They read the artifact from IRIS_MODEL_DIR, the same setting the service uses.
"""
