"""Engines behind small protocols: train engines (FSDP2; Megatron later) and rollout engines
(vLLM, HF). The trainer talks to workers, workers talk to these protocols; nothing above this
package imports vLLM, Megatron or FSDP."""
