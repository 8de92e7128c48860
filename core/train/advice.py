"""The lecture's words on transfer learning: what each scenario does and its 2x2 table."""

from __future__ import annotations

SCENARIOS = {"1": "replace and train the last FC layer", "2": "replace more FC layers (MLP head)",
             "3": "fixed feature extractor + classic classifier", "finetune": "fine-tune (discriminative LRs)"}

# The lecture's table: rows = how much data, columns = how similar to ImageNet.
TABLE = {"": ["Very little data", "A lot of data"],
         "Very similar dataset": ["Replace top layer (last FC)", "Replace top layer + fine-tune a few layers"],
         "Very different dataset": ["Replace more FC layers", "Replace more FC layers + fine-tune many layers"]}


def advise(similar: bool, lots_of_data: bool) -> tuple[str, str]:
    """The lecture's 2x2 table: (scenario key, the lecture's words)."""
    table = {(True, False): ("1", "Very similar dataset, very little data: replace the top layer (last FC)."),
             (False, False): ("2", "Very different dataset, very little data: replace more FC layers."),
             (True, True): ("finetune", "Very similar dataset, a lot of data: replace the top layer and "
                                        "fine-tune a few layers."),
             (False, True): ("finetune", "Very different dataset, a lot of data: replace more FC layers and "
                                         "fine-tune a large number of layers.")}
    return table[(similar, lots_of_data)]
