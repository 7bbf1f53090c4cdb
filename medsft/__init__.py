"""medsft: fine-tune small open LLMs into offline clinical-reasoning assistants (research use only). Nothing
heavy is imported here: Unsloth patches transformers and must be imported first (`medsft.train.backend`)."""

import logging as _logging

__version__ = "0.1.0"

DISCLAIMER = (
    "Research use only: this model's output is not medical advice and must not be used for diagnosis or "
    "treatment. Consult a qualified clinician."
)

# One handler on the package logger, so notebooks and the CLI show which backend, model and cache were used.
_log = _logging.getLogger("medsft")
if not _log.handlers:
    _handler = _logging.StreamHandler()
    _handler.setFormatter(_logging.Formatter("[medsft] %(levelname)s %(message)s"))
    _log.addHandler(_handler)
    _log.setLevel(_logging.INFO)
    _log.propagate = False

# The CLI and every kernel import medsft: unfixable library warnings filtered, bars that save cleanly (medsft.quiet)
from medsft import quiet as _quiet  # noqa: E402

_quiet.filter_known_warnings()
_quiet.use_text_progress_bars()
