"""Synthesizer: cited answers from a local llama.cpp model through LlamaIndex."""
from synthesizer.config import AnswerConfig
from synthesizer.engine import Synthesizer
from synthesizer.types import Answer, Citation

__all__ = ["Answer", "AnswerConfig", "Citation", "Synthesizer"]
