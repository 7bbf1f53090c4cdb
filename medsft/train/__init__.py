"""Training: LoRA SFT with response-only loss on TRL's SFTTrainer, through Unsloth on a GPU or transformers +
peft on a CPU, with the same calls.

Modules, one concern each (this file imports none of them, so `medsft.train.labels` does not load TRL):
`backend` (load, LoRA, save on either path), `fast_language_model` (`FastLanguageModel`: Unsloth's, or its
transformers + peft stand-in), `labels` (response-only labels), `steps` (the trainer and the run's steps),
`cpu_step` (the CPU step: packed rows, packed attention, LM head at labelled positions), `distributed` (DDP/FSDP),
`checkpoint_selection` (the benchmark accuracy that keeps a checkpoint), `plots` (loss curves).
"""
