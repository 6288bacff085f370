"""Package data: the shipped model bundle, models/default (installed as linborg.models)."""
