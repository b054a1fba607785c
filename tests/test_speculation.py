"""Speculative decoding with a draft model (synthesizer.speculation), on the tiny real model."""
from __future__ import annotations

import llama_cpp
import pytest
from llama_cpp import LogitsProcessorList

from core.errors import ConfigError, ModelUnavailable
from synthesizer.config import AnswerConfig
from synthesizer.engine import default_llm_factory
from synthesizer.llm import NoCopy, load_llama
from synthesizer.models import model_path
from synthesizer.speculation import SmallModelDraft, SpeculativeLlama

TINY = "smollm2-135m"
SOURCES = """[1] \"\"\"Growing Tomatoes: Plant tomato seedlings deep, burying two thirds of the stem, because
the buried stem grows extra roots. Space plants sixty centimetres apart. Remove the side shoots,
called suckers, that grow between the main stem and the leaf branches.\"\"\"
[2] \"\"\"Making Compost: A compost heap needs a balance of green material rich in nitrogen and brown
material rich in carbon. Turn the heap every two weeks so that air reaches the microbes. Finished
compost is dark and crumbly and smells of forest soil after about three months.\"\"\"
[3] \"\"\"Watering Vegetables: Water early in the morning so that leaves dry during the day, which
prevents fungal disease. Deep watering twice a week beats a daily sprinkle.\"\"\""""
# The greedy path on this prompt has no near-tie (its two best logits stay >= 0.28 apart): the
# target checks drafts in batches, and llama.cpp's batched CPU kernels give logits a few hundredths
# off the single-token ones, which flips near-ties (0.01-0.1 apart), so greedy text matches plain
# decoding only where none occurs.
PROMPT = ("<|im_start|>system\nYou answer questions about gardening from the sources.<|im_end|>\n"
          f"<|im_start|>user\nSources:\n{SOURCES}\n\nQuestion: Write the three titles, one per line."
          "<|im_end|>\n<|im_start|>assistant\n")


class CountingLlama(llama_cpp.Llama):
    """A real Llama that counts the tokens it evaluates."""

    evaluated = 0

    def eval(self, tokens):
        self.evaluated += len(tokens)
        super().eval(tokens)


def _greedy(llama, **kw) -> tuple[str, int]:
    llama.reset()
    out = llama.create_completion(PROMPT, max_tokens=40, temperature=0.0, **kw)
    return out["choices"][0]["text"], out["usage"]["completion_tokens"]


def _drafted(context_tokens: int = 0) -> SpeculativeLlama:
    """The tiny model drafting for itself, its drafter counting what it evaluates."""
    load_llama(TINY, 1024, 1)  # loads the ggml backends
    path = model_path(TINY)
    small = CountingLlama(model_path=path, n_ctx=1024, n_threads=1, verbose=False)
    draft = SmallModelDraft(small, num_pred_tokens=4, context_tokens=context_tokens)
    return SpeculativeLlama(model_path=path, n_ctx=1024, n_threads=1, verbose=False, draft_model=draft,
                            verify_batch=5)


@pytest.fixture(scope="module")
def drafted():
    return _drafted()


def test_draft_model_keeps_greedy_output(drafted):
    plain = load_llama(TINY, 1024, 1)
    want = _greedy(plain, repeat_penalty=1.0)
    assert len(plain.tokenize(PROMPT.encode(), special=True)) > 190 and want[1] == 40
    assert _greedy(drafted, repeat_penalty=1.0) == want


def test_rejected_drafts_leave_greedy_output_unchanged():
    # a drafter reading only the last 32 tokens guesses wrong often: its rejected drafts roll back
    # its KV cache and the target's tokens are kept
    drafted = _drafted(context_tokens=32)
    assert _greedy(drafted, repeat_penalty=1.0) == _greedy(load_llama(TINY, 1024, 1), repeat_penalty=1.0)
    draft = drafted.draft_model
    assert 0 < draft.accepted < draft.drafted / 2


def test_draft_model_keeps_greedy_output_with_nocopy(drafted):
    plain = load_llama(TINY, 1024, 1)
    assert (_greedy(drafted, repeat_penalty=1.1, logits_processor=LogitsProcessorList([NoCopy(drafted, 5.0)]))
            == _greedy(plain, repeat_penalty=1.1, logits_processor=LogitsProcessorList([NoCopy(plain, 5.0)])))


def test_draft_model_evaluates_the_prompt_once(drafted):
    small = drafted.draft_model.llama
    small.reset()
    small.evaluated = 0
    _text, made = _greedy(drafted, repeat_penalty=1.0)
    prompt = len(drafted.tokenize(PROMPT.encode(), special=True))
    # a draft step evaluates the token(s) the target added and its own draft, not the prompt again
    assert prompt < small.evaluated <= prompt + 5 * made


def test_draft_model_prompt_may_exceed_one_batch():
    llama = load_llama(TINY, 2048, 1, draft_model=TINY, draft_tokens=2)
    text = llama.create_completion(" ".join(f"word{i}" for i in range(260)) + "\nSay hello.", max_tokens=4,
                                   temperature=0.0)
    assert text["usage"]["prompt_tokens"] > 512


def test_only_the_slow_model_gets_the_draft_model():
    cfg = AnswerConfig(fast_model=TINY, slow_model=TINY, fast_n_ctx=1024, slow_n_ctx=2048, draft_model=TINY,
                       draft_tokens=3)
    make = default_llm_factory(cfg)
    assert make(TINY, cfg.fast_n_ctx, cfg.fast_max_tokens).llama.draft_model is None
    draft = make(TINY, cfg.slow_n_ctx, cfg.slow_max_tokens).llama.draft_model
    assert isinstance(draft, SmallModelDraft) and draft.num_pred_tokens == 3


def test_draft_model_of_another_vocabulary_is_refused():
    try:
        model_path("qwen2.5-coder-0.5b")
    except ModelUnavailable:
        pytest.skip("qwen2.5-coder-0.5b is not assembled")
    with pytest.raises(ConfigError, match="vocabularies differ"):
        load_llama(TINY, 512, 1, draft_model="qwen2.5-coder-0.5b")
