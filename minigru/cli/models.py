"""``minigru models``: the registered models, their sizes, arguments and training recipes."""
from __future__ import annotations

from ..models import registry

__all__ = ["cmd_models"]


def cmd_models(args) -> int:
    for name in registry.model_names():
        spec = registry.get_spec(name)
        model = registry.build_model(name, rng=0)
        recipe = ", ".join(f"{k}={v}" for k, v in spec.recipe.items())
        print(f"{name}: {spec.summary}\n  {type(model).__name__}, {model.num_parameters():,} parameters\n"
              f"  arguments: {model.config}\n  recipe: {recipe}")
    return 0
