"""The scorer on the GPU path, as far as a CPU reaches it: no compiling while scoring (the 4-bit Unsloth stall),
and each row read at its own position whatever `logits_to_keep` the installed transformers understands."""

from __future__ import annotations

import pytest
import torch

from medsft.data import MultipleChoiceItem
from medsft.evaluate.multiple_choice import build_requests
from medsft.evaluate.transformers_scorer import HFScorer, logits_at, positions_to_keep
from medsft.tasks import get_task

# Three lengths of question: with batch 1 every forward has its own width, as MedQA's sorted batches do.
ITEMS = [
    MultipleChoiceItem(id="a", question="Which vitamin prevents scurvy?", choices=["A", "B12", "C", "D"], answer=2),
    MultipleChoiceItem(
        id="b",
        question="A 67-year-old on warfarin starts clarithromycin; three days later her INR is 6.2. Why?",
        choices=["CYP3A4 inhibition", "Less vitamin K", "Protein binding", "Renal failure"],
        answer=0,
    ),
    MultipleChoiceItem(
        id="c",
        question="Which electrolyte disturbance causes peaked T waves on the ECG of a dialysis patient?",
        choices=["Hyponatraemia", "Hyperkalaemia", "Hypocalcaemia", "Hypomagnesaemia"],
        answer=1,
    ),
]


@pytest.fixture(scope="module")
def model(tiny_gemma_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def reference(model, gemma_tokenizer) -> list[list[float]]:
    """Scores from the default path (per-row `logits_to_keep` on this transformers)."""
    scorer = HFScorer(model, gemma_tokenizer, batch_size=2, progress=False)
    assert scorer.per_row_logits, "the CPU set-up's transformers keeps one position per row"
    return scorer.loglikelihood(build_requests(scorer, get_task("medqa"), ITEMS))


def requests_for(scorer: HFScorer) -> list:
    return build_requests(scorer, get_task("medqa"), ITEMS)


def assert_same_scores(scores: list[list[float]], expected: list[list[float]]) -> None:
    for row, want in zip(scores, expected, strict=True):
        assert row == pytest.approx(want, abs=1e-5)


def test_scores_are_the_same_where_transformers_cannot_keep_one_position_per_row(model, gemma_tokenizer, reference):
    # transformers 5.17 (the GPU pin) has no per-row slicing: the scorer sends the distinct positions as 1-D
    scorer = HFScorer(model, gemma_tokenizer, batch_size=2, progress=False)
    scorer.per_row_logits = False
    assert_same_scores(scorer.loglikelihood(requests_for(scorer)), reference)


class EveryPosition(torch.nn.Module):
    """A forward that ignores a tensor `logits_to_keep` and returns logits at every position, as Unsloth's
    Llama forward does (`if isinstance(logits_to_keep, torch.Tensor): num_logits_to_keep = 0`)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.kept: list[object] = []

    def forward(self, input_ids, logits_to_keep=0, **kwargs):  # noqa: ANN001, ANN003, ANN201
        self.kept.append(logits_to_keep)
        keep = logits_to_keep if isinstance(logits_to_keep, int) else 0
        return self.inner(input_ids=input_ids, logits_to_keep=keep, **kwargs)


@pytest.mark.parametrize("per_row", [True, False])
def test_scores_are_the_same_when_the_forward_computes_every_position(model, gemma_tokenizer, reference, per_row):
    wrapped = EveryPosition(model)
    scorer = HFScorer(wrapped, gemma_tokenizer, batch_size=2, progress=False)
    scorer.per_row_logits = per_row
    assert_same_scores(scorer.loglikelihood(requests_for(scorer)), reference)
    assert all(isinstance(k, torch.Tensor) for k in wrapped.kept)


def test_a_per_row_request_sliced_the_5_17_way_is_refused_not_misread():
    # transformers 5.17 does hidden[:, logits_to_keep, :]: a (B, 1) tensor gives (B, B, 1, vocab), row b at
    # every row's position; taking [:, 0] of that reads row b at row 0's position (the old bug on the GPU pin)
    positions = torch.tensor([5, 2, 7])
    keep = positions_to_keep(positions, per_row=True)
    hidden = torch.randn(3, 8, 4)
    sliced_like_5_17 = hidden[:, keep, :]
    assert sliced_like_5_17.shape == (3, 3, 1, 4)
    with pytest.raises(RuntimeError, match="expected one row per kept position"):
        logits_at(sliced_like_5_17, positions, keep, width=8)


def test_the_1d_request_picks_each_rows_own_position():
    positions = torch.tensor([5, 2, 5, 7])
    keep = positions_to_keep(positions, per_row=False)
    assert keep.tolist() == [2, 5, 7]
    logits = torch.randn(4, 8, 3)
    picked = logits_at(logits[:, keep, :], positions, keep, width=8)
    assert torch.equal(picked, logits[torch.arange(4), positions])


class CountingBackend:
    """A torch.compile backend that only counts the graphs it is asked to compile (no Inductor, fast on CPU)."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):  # noqa: ANN001, ANN204
        self.graphs += 1
        return graph_module.forward


@pytest.fixture
def compiled_mlp(model):
    """The first layer's MLP compiled with static shapes, as a patched model's compiled regions behave when
    their guards fail: one new graph for each new (batch, width)."""
    mlp = model.model.layers[0].mlp
    backend = CountingBackend()
    torch._dynamo.reset()
    mlp.forward = torch.compile(type(mlp).forward.__get__(mlp), backend=backend, dynamic=False)
    yield backend
    del mlp.forward  # back to the class's forward
    torch._dynamo.reset()


def test_scoring_compiles_nothing_however_many_batch_shapes(model, gemma_tokenizer, compiled_mlp, reference):
    scorer = HFScorer(model, gemma_tokenizer, batch_size=1, progress=False)
    assert_same_scores(scorer.loglikelihood(requests_for(scorer)), reference)
    assert compiled_mlp.graphs == 0
    model(input_ids=torch.tensor([[2, 10, 11]]))  # the stance is restored afterwards: compiling works again
    assert compiled_mlp.graphs == 1


def test_without_the_switch_each_new_width_compiles_again(model, gemma_tokenizer, compiled_mlp, reference):
    # The mechanism behind the stall, on a CPU: three widths, three graphs (Unsloth lets this go on to 1024)
    widths: list[int] = []
    scorer = HFScorer(
        model, gemma_tokenizer, batch_size=1, progress=False, eager=False, on_batch=lambda b: widths.append(b["width"])
    )
    assert_same_scores(scorer.loglikelihood(requests_for(scorer)), reference)
    assert len(set(widths)) == 3
    assert compiled_mlp.graphs == 3


def test_each_batch_is_reported_with_its_rows_width_and_seconds(model, gemma_tokenizer):
    batches: list[dict] = []
    scorer = HFScorer(model, gemma_tokenizer, batch_size=2, progress=False, on_batch=batches.append)
    requests = requests_for(scorer)
    scorer.loglikelihood(requests)
    longest = max(len(r.context) for r in requests)
    assert [b["rows"] for b in batches] == [2, 1]  # longest first, then the rest
    assert batches[0]["width"] == longest
    assert all(b["seconds"] > 0 for b in batches)
