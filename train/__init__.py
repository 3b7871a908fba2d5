"""Training the mix model (``python -m train`` / ``automix-train``, Hydra configs in ``configs/``)
and the scripts that build training data (``build_*_multitracks.py``)."""
