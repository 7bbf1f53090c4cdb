"""Training: LoRA SFT with response-only loss on TRL's SFTTrainer, through Unsloth or transformers + peft. This file
imports none of its modules, so `medsft.train.labels` does not load TRL."""
