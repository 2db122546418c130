"""What a call costs: tokens times a price table, or compute time for local models."""

from __future__ import annotations

from unwalled.backends.base import Usage
from unwalled.config import Config


def cost(config: Config, target: str, usage: Usage, seconds: float) -> float:
    """Dollars for one call to ``target``; 0.0 where no price is configured."""
    price = config.price_for(target)
    tokens = (usage.prompt_tokens * price.input_per_mtok
              + usage.completion_tokens * price.output_per_mtok) / 1_000_000
    return tokens + seconds * price.hourly / 3600
