"""Training and evaluation data for medsft: loaders, synthetic cases, cleaning, decontamination, mixing.

By default the real data carried in `benchmarks/` (or a self-written sample where no licensed copy exists), so all
of it runs offline. `medsft.data.build`, the whole pipeline, sits above `medsft.tasks`, so this package does not
import it; nor does it import datasets, transformers or torch.
"""

from medsft.data.clean import (
    add_disclaimer,
    drop_exact_duplicates,
    drop_near_duplicates,
    filter_by_length,
    scrub_pii,
    scrub_text,
)
from medsft.data.decontaminate import EvalText, OverlapIndex, decontaminate
from medsft.data.loaders import (
    load_instructions,
    load_medical_o1,
    load_medqa,
    load_messages,
    load_pubmedqa,
    load_source,
    sample_path,
)
from medsft.data.mix import mix_sources, split_train_validation
from medsft.data.records import DataError, MultipleChoiceItem
from medsft.data.synthetic import (
    DOMAINS,
    PRIMARY_LABEL,
    SyntheticCase,
    expected_label,
    generate_cases,
    generate_synthetic,
    parse_synthetic_answer,
    synthetic_eval_cases,
    synthetic_ood_cases,
)

__all__ = [
    "DOMAINS", "PRIMARY_LABEL", "DataError", "EvalText", "MultipleChoiceItem", "OverlapIndex", "SyntheticCase",
    "add_disclaimer", "decontaminate", "drop_exact_duplicates", "drop_near_duplicates", "expected_label",
    "filter_by_length", "generate_cases", "generate_synthetic", "load_instructions", "load_medical_o1", "load_medqa",
    "load_messages", "load_pubmedqa", "load_source", "mix_sources", "parse_synthetic_answer", "sample_path",
    "scrub_pii", "scrub_text", "split_train_validation", "synthetic_eval_cases", "synthetic_ood_cases",
]
