"""Synthetic, deterministic feeds for all five sources, with the truth behind them.

from sources.generator import generate, GeneratorConfig, NoiseRates
summary = generate(Path("landing"), GeneratorConfig(clients=10_000, seed=7))
"""

from .config import GenerationSummary, GeneratorConfig, NoiseRates
from .core import generate

__all__ = ["GenerationSummary", "GeneratorConfig", "NoiseRates", "generate"]
