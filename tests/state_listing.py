"""The bidirectional patch as STATE first published it (listing 2 of the seed), in our own code.

Arc Institute's STATE: https://github.com/ArcInstitute/state. Its subclass overrides
``_update_causal_mask`` (a LlamaModel method until transformers 4.52), passes
``is_causal=False`` to the parent forward, and swaps in a rotary module with cos = 1, sin = 0
built from the hidden states' shape. Tests use it to check that the probes judge it right.
"""

from torch import nn
from transformers import LlamaModel


class SeedNoRoPE(nn.Module):
    """cos = 1, sin = 0, shaped like the hidden states: (batch, seq, head_dim)."""

    def __init__(self, head_dim: int, hidden_size: int):
        super().__init__()
        self.head_dim = head_dim
        self.hidden_size = hidden_size

    def forward(self, hidden_states, position_ids):
        batch, seq, _ = hidden_states.shape
        return (
            hidden_states.new_ones(batch, seq, self.head_dim),
            hidden_states.new_zeros(batch, seq, self.head_dim),
        )


class SeedBidirectionalModel(LlamaModel):
    update_causal_mask_calls = 0

    def __init__(self, config):
        super().__init__(config)
        self.rotary_emb = SeedNoRoPE(head_dim=config.head_dim, hidden_size=config.hidden_size)

    def _update_causal_mask(
        self, attention_mask, input_tensor, cache_position, past_key_values, output_attentions=False
    ):
        type(self).update_causal_mask_calls += 1
        return None

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, **kwargs):
        kwargs["is_causal"] = False
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
