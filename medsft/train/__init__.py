"""Training: LoRA SFT with response-only loss on TRL's SFTTrainer, through Unsloth on a GPU or transformers +
peft on a CPU, with the same calls. This file imports none of its modules, so `medsft.train.labels` does not load TRL.
"""
