"""medsft.quiet: exactly the listed library warnings are ignored, and rendered kernels get clean progress bars."""

from __future__ import annotations

import os
import warnings

import pytest
import tqdm.auto
import tqdm.std

from medsft import quiet


def shown(category: type[Warning], message: str) -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.filter_known_warnings()
        warnings.warn(message, category, stacklevel=1)
    return bool(caught)


def test_the_known_library_deprecation_is_ignored() -> None:
    assert not shown(FutureWarning, "`is_gradient_checkpointing` is deprecated and will be removed in v6. Use ...")


def test_other_warnings_are_kept_even_with_a_similar_message_or_category() -> None:
    assert shown(FutureWarning, "`gradient_checkpointing` is deprecated and will be removed in v6. Use ...")
    assert shown(FutureWarning, "`gradient_checkpointing_kwargs` is deprecated and will be removed in v6.")
    assert shown(DeprecationWarning, "`is_gradient_checkpointing` is deprecated")
    assert shown(UserWarning, "something else")


def test_rendered_environment_reaches_kernels_started_inside_and_is_undone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(quiet.RENDERED, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")  # the user's own setting wins
    with quiet.rendered_environment():
        assert os.environ[quiet.RENDERED] == "1" and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "0"
    assert quiet.RENDERED not in os.environ and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "0"


def test_only_a_rendered_kernel_swaps_progress_widgets_for_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tqdm.auto, "tqdm", tqdm.auto.tqdm)  # restored after the test
    monkeypatch.setattr(tqdm.auto, "trange", tqdm.auto.trange)
    monkeypatch.setattr(tqdm.auto, "tqdm", object)
    monkeypatch.delenv(quiet.RENDERED, raising=False)
    quiet.use_text_progress_bars()
    assert tqdm.auto.tqdm is object
    monkeypatch.setenv(quiet.RENDERED, "1")
    quiet.use_text_progress_bars()
    assert tqdm.auto.tqdm is tqdm.std.tqdm and tqdm.auto.trange is tqdm.std.trange


def test_the_trainer_settings_use_the_checkpointing_name_the_installed_transformers_knows(tmp_path) -> None:
    from trl import SFTConfig

    from medsft.config import build_config
    from medsft.train.steps import sft_arguments

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        args = SFTConfig(**sft_arguments(build_config({}), tmp_path, has_cuda=False, with_eval=False, steps=2))
    assert not [w for w in caught if "checkpointing" in str(w.message)]
    assert args.gradient_checkpointing is False  # TRL's default (True) is overridden whichever name is used
