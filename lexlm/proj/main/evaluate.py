"""The main job has no run kind of its own: ``python -m lexlm.evaluate --workdir W`` finds the
runs of every section under ``W/runs/<section>/runs`` and evaluates each by its kind."""
